"""The meetings service's event contracts: what it publishes on its topic.

The payloads and their value objects are the only thing other services know of it;
fields may grow, names and meanings never change.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ipmg_shared.actors import Unit
from ipmg_shared.events import DomainEvent, EventRegistry

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Place = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2_000)]
AgendaItem = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
MinutesText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50_000)
]


class ValueObject(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MeetingStatus(StrEnum):
    SCHEDULED = "scheduled"
    HELD = "held"
    CANCELLED = "cancelled"


class Attendee(ValueObject):
    name: Name
    role: Name  # e.g. "Minister, Women Development Department"
    unit: Unit


Attendees = Annotated[tuple[Attendee, ...], Field(min_length=1, max_length=500)]
Agenda = Annotated[tuple[AgendaItem, ...], Field(max_length=100)]


# --- events -------------------------------------------------------------------------------


class MeetingScheduled(DomainEvent):
    """A meeting was put in the calendar: invite its host and members, expect it on that day."""

    event_type = "MeetingScheduled"

    meeting_id: UUID
    scheduled_for: date
    host_unit: Unit
    venue: Place
    occasion: Place | None  # e.g. "16 Days of Activism"
    agenda: Agenda = ()  # added later: events recorded before it have none
    # Added with the rotation rules; events recorded before them read as ordinary meetings.
    extraordinary: bool = False
    reason: Reason | None = None  # why an extraordinary or out-of-turn meeting was called
    rotation_version: str | None = None
    expected_host: Unit | None = None  # the host due by the rotation, None at its start


class MeetingRescheduled(DomainEvent):
    """A scheduled meeting moved (date, host or venue): replace what you knew of it."""

    event_type = "MeetingRescheduled"

    meeting_id: UUID
    scheduled_for: date
    host_unit: Unit
    venue: Place
    reason: Reason


class MeetingCancelled(DomainEvent):
    """A meeting will not take place: drop it; nothing can be passed at it."""

    event_type = "MeetingCancelled"

    meeting_id: UUID
    reason: Reason


class MeetingHeld(DomainEvent):
    """A meeting took place with these attendees: resolutions may now be passed at it."""

    event_type = "MeetingHeld"

    meeting_id: UUID
    held_on: date
    host_unit: Unit
    venue: Place
    occasion: Place | None
    attendees: Attendees
    agenda: Agenda


class MinutesPublished(DomainEvent):
    """The minutes of a held meeting are out: the text replaces any earlier minutes."""

    event_type = "MinutesPublished"

    meeting_id: UUID
    minutes: MinutesText


REGISTRY = EventRegistry(
    [MeetingScheduled, MeetingRescheduled, MeetingCancelled, MeetingHeld, MinutesPublished]
)
