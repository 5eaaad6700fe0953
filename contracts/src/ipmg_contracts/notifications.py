"""The notifications service's event contracts: what it publishes on its topic.

What was sent to whom, when, by which channel and because of what is itself part of the audit
trail. Each delivery (one message to one recipient by one channel) is a stream
``notification-<delivery id>`` holding its outcome: ``NotificationSent`` or
``NotificationFailed`` (a failed delivery sent again later adds its new outcome to the same
stream). Each reminder is a stream ``reminder-<kind>-<entity>-<unit>-<due date>`` holding one
``ReminderIssued``: the stream id is the reminder's key, so it is issued at most once.

The payloads and their value objects are the only thing other services know of it;
fields may grow, names and meanings never change.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Self
from uuid import UUID

from pydantic import Field, StringConstraints, model_validator

from ipmg_shared.actors import Unit
from ipmg_shared.events import DomainEvent, EventRegistry

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Subject = Annotated[str, StringConstraints(min_length=1, max_length=300)]
Address = Annotated[str, StringConstraints(min_length=3, max_length=500)]  # email or URL
EventType = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ErrorText = Annotated[str, StringConstraints(min_length=1, max_length=2_000)]
Entity = Annotated[str, StringConstraints(min_length=1, max_length=120)]
ActionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")]
Quarter = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-Q[1-4]$")]
Attempts = Annotated[int, Field(strict=True, ge=1, le=1_000)]


class NotificationKind(StrEnum):
    INVITATION = "invitation"  # a meeting was scheduled
    MEETING_CHANGED = "meeting_changed"  # rescheduled: new date, host or venue
    MEETING_CANCELLED = "meeting_cancelled"
    FEEDBACK_REQUEST = "feedback_request"  # a resolution was circulated to the unit
    SIGNED_TEXT = "signed_text"  # the signed resolution, to its responsible units
    ACTIONS_ASSIGNED = "actions_assigned"  # the unit's own actions of an adopted plan
    FEEDBACK_REMINDER = "feedback_reminder"  # feedback due soon (or overdue) and not given
    ACTION_FOLLOW_UP = "action_follow_up"  # an action overdue without progress
    QUARTERLY_DIGEST = "quarterly_digest"  # to the NCSW secretariat, once a quarter


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


class ReminderKind(StrEnum):
    """What a reminder is about; each (kind, entity, unit, due date) is issued at most once."""

    FEEDBACK_DUE = "feedback_due"  # entity: the resolution id
    ACTION_OVERDUE = "action_overdue"  # entity: "<resolution id>/<action id>"
    QUARTERLY_DIGEST = "quarterly_digest"  # entity: the quarter; due: its day after


REMINDER_NOTIFICATION_KIND = {
    ReminderKind.FEEDBACK_DUE: NotificationKind.FEEDBACK_REMINDER,
    ReminderKind.ACTION_OVERDUE: NotificationKind.ACTION_FOLLOW_UP,
    ReminderKind.QUARTERLY_DIGEST: NotificationKind.QUARTERLY_DIGEST,
}


# --- events -------------------------------------------------------------------------------


class _DeliveryOutcome(DomainEvent):
    delivery_id: UUID  # deterministic: derived from (cause event, channel, recipient)
    cause_event_id: UUID  # the upstream event, or the ReminderIssued, that called for it
    cause_type: EventType
    cause_source: Name
    kind: NotificationKind
    channel: Channel
    unit: Unit  # the recipient's unit
    person: Name | None  # None for a unit's webhook
    address: Address  # the email address or webhook URL used
    subject: Subject
    attempts: Attempts  # attempts of this round, the successful one included


class NotificationSent(_DeliveryOutcome):
    """A message reached its channel for a recipient: the delivery is done."""

    event_type = "NotificationSent"


class NotificationFailed(_DeliveryOutcome):
    """Every attempt of a round failed; the delivery waits for an operator to send it again."""

    event_type = "NotificationFailed"

    error: ErrorText  # the last attempt's error


class ReminderIssued(DomainEvent):
    """A reminder fell due (feedback, overdue action or quarterly digest); it is issued once."""

    event_type = "ReminderIssued"

    reminder_kind: ReminderKind
    entity: Entity
    unit: Unit
    due_on: date
    resolution_id: UUID | None
    action_id: ActionId | None
    quarter: Quarter | None

    @model_validator(mode="after")
    def _refers_to_its_entity(self) -> Self:
        if self.reminder_kind is ReminderKind.QUARTERLY_DIGEST:
            if self.quarter is None or self.entity != self.quarter:
                raise ValueError("a quarterly digest names its quarter as its entity")
        elif self.resolution_id is None:
            raise ValueError("a feedback or action reminder names its resolution")
        if (self.reminder_kind is ReminderKind.ACTION_OVERDUE) != (self.action_id is not None):
            raise ValueError("an action id is given exactly for action reminders")
        return self


REGISTRY = EventRegistry([NotificationSent, NotificationFailed, ReminderIssued])
