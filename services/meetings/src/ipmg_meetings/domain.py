"""The Meeting aggregate: an IPMG quarterly meeting from scheduling to published minutes.

Pure: ``decide(command, state)`` checks a command against the state folded from the meeting's
past events and returns the new events, or raises a refusal naming the rule; ``evolve`` folds
one event into the state. Ids and the clock arrive on the command; nothing here does I/O.

Shape rules (non-empty attendees, text lengths, member units) are enforced by the models, so
a malformed command fails validation before ``decide`` sees it and a stored event can never
break them either. Rules that depend on the meeting's history are enforced by ``decide``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import date
from typing import Any, assert_never
from uuid import UUID

from pydantic import AwareDatetime

from ipmg_contracts.meetings import (
    REGISTRY,
    Agenda,
    AgendaItem,
    Attendee,
    Attendees,
    MeetingCancelled,
    MeetingHeld,
    MeetingRescheduled,
    MeetingScheduled,
    MeetingStatus,
    MinutesPublished,
    MinutesText,
    Name,
    Place,
    Reason,
    ValueObject,
)
from ipmg_meetings.rotation import ROTATION_VERSION, Calendar, check_calendar
from ipmg_shared.actors import Actor, Unit
from ipmg_shared.domain import CommandRefused, NotAuthorised, NotFound
from ipmg_shared.events import DomainEvent
from ipmg_shared.plausible import (
    SCHEDULE_HORIZON_YEARS,
    PlausibleDate,
    require_past,
    require_within,
)

# --- commands -----------------------------------------------------------------------------


class Command(ValueObject):
    actor: Actor
    at: AwareDatetime
    meeting_id: UUID


class ScheduleMeeting(Command):
    scheduled_for: PlausibleDate
    host_unit: Unit
    venue: Place
    occasion: Place | None = None
    agenda: Agenda = ()
    extraordinary: bool = False
    reason: Reason | None = None
    calendar: Calendar = ()  # the other meetings, filled by the service


class RescheduleMeeting(Command):
    scheduled_for: PlausibleDate
    host_unit: Unit
    venue: Place
    reason: Reason


class CancelMeeting(Command):
    reason: Reason


class HoldMeeting(Command):
    held_on: PlausibleDate
    host_unit: Unit
    venue: Place
    occasion: Place | None = None
    attendees: Attendees
    agenda: Agenda = ()


class PublishMinutes(Command):
    minutes: MinutesText


MeetingCommand = ScheduleMeeting | RescheduleMeeting | CancelMeeting | HoldMeeting | PublishMinutes


# --- state --------------------------------------------------------------------------------


class MeetingState(ValueObject):
    """What the meeting's events say so far; ``status`` is None while the stream is empty."""

    version: int = 0
    meeting_id: UUID | None = None
    status: MeetingStatus | None = None
    scheduled_for: date | None = None
    host_unit: Unit | None = None
    venue: str | None = None
    occasion: str | None = None
    held_on: date | None = None
    attendees: tuple[Attendee, ...] = ()
    agenda: tuple[str, ...] = ()
    extraordinary: bool = False
    cancellation_reason: str | None = None
    minutes: str | None = None

    @classmethod
    def initial(cls) -> MeetingState:
        return cls()


def evolve(state: MeetingState, event: DomainEvent) -> MeetingState:
    changes: dict[str, Any]
    match event:
        case MeetingScheduled():
            changes = {
                "meeting_id": event.meeting_id,
                "status": MeetingStatus.SCHEDULED,
                "scheduled_for": event.scheduled_for,
                "host_unit": event.host_unit,
                "venue": event.venue,
                "occasion": event.occasion,
                "agenda": event.agenda,
                "extraordinary": event.extraordinary,
            }
        case MeetingRescheduled():
            changes = {
                "scheduled_for": event.scheduled_for,
                "host_unit": event.host_unit,
                "venue": event.venue,
            }
        case MeetingCancelled():
            changes = {"status": MeetingStatus.CANCELLED, "cancellation_reason": event.reason}
        case MeetingHeld():
            changes = {
                "status": MeetingStatus.HELD,
                "held_on": event.held_on,
                "host_unit": event.host_unit,
                "venue": event.venue,
                "occasion": event.occasion,
                "attendees": event.attendees,
                "agenda": event.agenda,
            }
        case MinutesPublished():
            changes = {"minutes": event.minutes}
        case _:
            raise TypeError(f"not a meeting event: {type(event).__name__}")
    return state.model_copy(update={**changes, "version": state.version + 1})


def fold(events: Iterable[DomainEvent]) -> MeetingState:
    return functools.reduce(evolve, events, MeetingState.initial())


# --- decisions ----------------------------------------------------------------------------


def decide(command: MeetingCommand, state: MeetingState) -> list[DomainEvent]:
    """The events ``command`` produces against ``state``; raises if a rule refuses it."""
    if not command.actor.is_secretariat:
        raise NotAuthorised(
            "meeting.auth.secretariat_only", "only the NCSW secretariat runs meeting commands"
        )
    if isinstance(command, ScheduleMeeting | RescheduleMeeting):
        require_within(command.scheduled_for, command.at, SCHEDULE_HORIZON_YEARS, "scheduled_for")
    match command:
        case ScheduleMeeting():
            return _schedule(command, state)
        case RescheduleMeeting():
            return _reschedule(command, state)
        case CancelMeeting():
            return _cancel(command, state)
        case HoldMeeting():
            return _hold(command, state)
        case PublishMinutes():
            return _publish_minutes(command, state)
        case _:
            assert_never(command)


def _schedule(command: ScheduleMeeting, state: MeetingState) -> list[DomainEvent]:
    if state.status is not None:
        raise CommandRefused(
            "meeting.schedule.already_scheduled", "this meeting has already been scheduled"
        )
    due = check_calendar(
        command.meeting_id,
        command.scheduled_for,
        command.host_unit,
        command.venue,
        command.calendar,
        extraordinary=command.extraordinary,
        reason=command.reason,
    )
    return [
        MeetingScheduled(
            meeting_id=command.meeting_id,
            scheduled_for=command.scheduled_for,
            host_unit=command.host_unit,
            venue=command.venue,
            occasion=command.occasion,
            agenda=command.agenda,
            extraordinary=command.extraordinary,
            reason=command.reason,
            rotation_version=ROTATION_VERSION,
            expected_host=due,
        )
    ]


def _reschedule(command: RescheduleMeeting, state: MeetingState) -> list[DomainEvent]:
    status = _existing(state)
    if status is not MeetingStatus.SCHEDULED:
        raise CommandRefused(
            "meeting.reschedule.requires_scheduled",
            f"only a scheduled meeting can be rescheduled; this one is {status}",
        )
    plan = (command.scheduled_for, command.host_unit, command.venue)
    if plan == (state.scheduled_for, state.host_unit, state.venue):
        raise CommandRefused(
            "meeting.reschedule.no_change", "the new date, host and venue are the current ones"
        )
    return [
        MeetingRescheduled(
            meeting_id=command.meeting_id,
            scheduled_for=command.scheduled_for,
            host_unit=command.host_unit,
            venue=command.venue,
            reason=command.reason,
        )
    ]


def _cancel(command: CancelMeeting, state: MeetingState) -> list[DomainEvent]:
    status = _existing(state)
    if status is not MeetingStatus.SCHEDULED:
        raise CommandRefused(
            "meeting.cancel.requires_scheduled",
            f"only a scheduled meeting can be cancelled; this one is {status}",
        )
    return [MeetingCancelled(meeting_id=command.meeting_id, reason=command.reason)]


def _hold(command: HoldMeeting, state: MeetingState) -> list[DomainEvent]:
    status = _existing(state)
    if status is MeetingStatus.CANCELLED:
        raise CommandRefused(
            "meeting.hold.cancelled", "a cancelled meeting cannot be recorded as held"
        )
    if status is MeetingStatus.HELD:
        raise CommandRefused("meeting.hold.already_held", "this meeting was already held")
    require_past(command.held_on, command.at, "held_on", rule="meeting.hold.in_future")
    return [
        MeetingHeld(
            meeting_id=command.meeting_id,
            held_on=command.held_on,
            host_unit=command.host_unit,
            venue=command.venue,
            occasion=command.occasion,
            attendees=command.attendees,
            agenda=command.agenda,
        )
    ]


def _publish_minutes(command: PublishMinutes, state: MeetingState) -> list[DomainEvent]:
    status = _existing(state)
    if status is not MeetingStatus.HELD:
        raise CommandRefused(
            "meeting.minutes.requires_held",
            f"minutes are published only for a held meeting; this one is {status}",
        )
    if state.minutes is not None:
        raise CommandRefused(
            "meeting.minutes.already_published", "the minutes of this meeting are published"
        )
    return [MinutesPublished(meeting_id=command.meeting_id, minutes=command.minutes)]


def _existing(state: MeetingState) -> MeetingStatus:
    if state.status is None:
        raise NotFound("meeting.not_found", "no such meeting has been scheduled")
    return state.status


__all__ = [
    "REGISTRY",
    "Agenda",
    "AgendaItem",
    "Attendee",
    "Attendees",
    "CancelMeeting",
    "Command",
    "HoldMeeting",
    "MeetingCancelled",
    "MeetingCommand",
    "MeetingHeld",
    "MeetingRescheduled",
    "MeetingScheduled",
    "MeetingState",
    "MeetingStatus",
    "MinutesPublished",
    "MinutesText",
    "Name",
    "Place",
    "PublishMinutes",
    "Reason",
    "RescheduleMeeting",
    "ScheduleMeeting",
    "ValueObject",
    "decide",
    "evolve",
    "fold",
]
