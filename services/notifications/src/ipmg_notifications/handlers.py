"""The consumer handler: upstream meeting and resolution events in, planned deliveries out.

It runs inside the consumer runner's transaction, so the projection, the planned deliveries
and the consumer's checkpoint commit together. It sends nothing itself: the delivery worker
does, after the commit. A redelivered event is skipped by the runner (stream version); an
event applied again after a checkpoint was lost plans deliveries that already exist and
``ON CONFLICT DO NOTHING`` keeps the first. An event recorded upstream longer ago than the
stale horizon is history being replayed: it updates the projection, and its deliveries are
recorded as ``suppressed`` instead of being sent; so are the notices whose day has passed
(an invitation to a meeting already held, a feedback request past its due date), which is
what history loaded in one go (``ipmg seed``) is made of.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from ipmg_contracts.meetings import (
    MeetingCancelled,
    MeetingHeld,
    MeetingRescheduled,
    MeetingScheduled,
    MinutesPublished,
)
from ipmg_contracts.resolutions import (
    ActionPlanAdopted,
    FeedbackReceived,
    ProgressReported,
    ResolutionAmended,
    ResolutionApproved,
    ResolutionCirculated,
    ResolutionClosed,
    ResolutionPassed,
    ResolutionSigned,
)
from ipmg_notifications.deliveries import Cause, DeliveryStatus, insert_deliveries
from ipmg_notifications.directory import Directory
from ipmg_notifications.domain import (
    NOTICES_READ_FACTS,
    Facts,
    MeetingFacts,
    Notice,
    ResolutionFacts,
    is_stale,
    notices_for,
)
from ipmg_shared.actors import Unit
from ipmg_shared.envelope import Envelope
from ipmg_shared.events import DomainEvent
from ipmg_shared.logging import get_logger

if TYPE_CHECKING:
    from ipmg_shared.db import DbConnection

log = get_logger("ipmg.notifications.handler")

MeetingEvent = (
    MeetingScheduled | MeetingRescheduled | MeetingCancelled | MeetingHeld | MinutesPublished
)


class NotificationHandler:
    def __init__(
        self,
        directory: Directory,
        *,
        stale_after: timedelta,
        clock: Callable[[], datetime],
        timezone: tzinfo,
    ) -> None:
        self.directory = directory
        self.stale_after = stale_after
        self.clock = clock
        self.timezone = timezone

    async def __call__(
        self, connection: DbConnection, envelope: Envelope, event: DomainEvent, _published: bytes
    ) -> None:
        # Read before ``project`` moves the projection past the event; only when needed.
        facts = (
            await facts_before(connection, event) if type(event) in NOTICES_READ_FACTS else Facts()
        )
        await project(connection, envelope, event)
        notices = notices_for(event, facts)
        if not notices:
            return
        now = self.clock()
        today = now.astimezone(self.timezone).date()
        stale = is_stale(envelope.recorded_at, now, self.stale_after)
        news: list[Notice] = []
        past: list[Notice] = []
        for notice in notices:
            (past if stale or notice.is_past(today) else news).append(notice)
        cause = Cause.of(envelope)
        await insert_deliveries(
            connection, cause, news, self.directory, status=DeliveryStatus.PENDING, now=now
        )
        suppressed = await insert_deliveries(
            connection, cause, past, self.directory, status=DeliveryStatus.SUPPRESSED, now=now
        )
        if suppressed:
            log.info(
                "event_not_notified",
                type=envelope.type,
                reason="replayed history" if stale else "its day has passed",
                recorded_at=envelope.recorded_at.isoformat(),
                suppressed=suppressed,
            )


async def facts_before(connection: DbConnection, event: DomainEvent) -> Facts:
    """The event's meeting or resolution as the projection knew it before the event."""
    if isinstance(event, MeetingEvent):
        row = await connection.fetchrow(
            "SELECT meeting_id, scheduled_for, host_unit, venue, occasion "
            "FROM known_meetings WHERE meeting_id = $1",
            event.meeting_id,
        )
        if row is None:
            return Facts()
        return Facts(
            meeting=MeetingFacts(
                row["meeting_id"],
                row["scheduled_for"],
                Unit(row["host_unit"]),
                row["venue"],
                row["occasion"],
            )
        )
    resolution_id = getattr(event, "resolution_id", None)
    if resolution_id is None:
        return Facts()
    return Facts(resolution=await known_resolution(connection, resolution_id))


async def known_resolution(
    connection: DbConnection, resolution_id: object
) -> ResolutionFacts | None:
    row = await connection.fetchrow(
        "SELECT resolution_id, number, title, text, responsible_units "
        "FROM known_resolutions WHERE resolution_id = $1",
        resolution_id,
    )
    if row is None:
        return None
    return ResolutionFacts(
        row["resolution_id"],
        row["number"],
        row["title"],
        row["text"],
        tuple(Unit(unit) for unit in row["responsible_units"]),
    )


async def project(connection: DbConnection, envelope: Envelope, event: DomainEvent) -> None:
    """Fold the event into the projection; each statement sets values from the event alone."""
    match event:
        case MeetingScheduled() | MeetingRescheduled():
            await connection.execute(
                "INSERT INTO known_meetings (meeting_id, scheduled_for, host_unit, venue, "
                "occasion, status) VALUES ($1, $2, $3, $4, $5, 'scheduled') "
                "ON CONFLICT (meeting_id) DO UPDATE SET scheduled_for = EXCLUDED.scheduled_for, "
                "host_unit = EXCLUDED.host_unit, venue = EXCLUDED.venue, "
                "occasion = coalesce(EXCLUDED.occasion, known_meetings.occasion), "
                "status = 'scheduled'",
                event.meeting_id,
                event.scheduled_for,
                event.host_unit.value,
                event.venue,
                event.occasion if isinstance(event, MeetingScheduled) else None,
            )
        case MeetingCancelled():
            await connection.execute(
                "UPDATE known_meetings SET status = 'cancelled' WHERE meeting_id = $1",
                event.meeting_id,
            )
        case MeetingHeld():
            await connection.execute(
                "INSERT INTO known_meetings (meeting_id, scheduled_for, host_unit, venue, "
                "occasion, status) VALUES ($1, $2, $3, $4, $5, 'held') "
                "ON CONFLICT (meeting_id) DO UPDATE SET scheduled_for = EXCLUDED.scheduled_for,"
                " host_unit = EXCLUDED.host_unit, venue = EXCLUDED.venue, "
                "occasion = EXCLUDED.occasion, status = 'held'",
                event.meeting_id,
                event.held_on,
                event.host_unit.value,
                event.venue,
                event.occasion,
            )
        case MinutesPublished():
            pass
        case ResolutionPassed():
            await connection.execute(
                "INSERT INTO known_resolutions (resolution_id, number, title, text, "
                "responsible_units, status) VALUES ($1, $2, $3, $4, $5, 'passed') "
                "ON CONFLICT (resolution_id) DO UPDATE SET number = EXCLUDED.number, "
                "title = EXCLUDED.title, text = EXCLUDED.text, "
                "responsible_units = EXCLUDED.responsible_units, status = 'passed', "
                "circulation = 0, participants = '{}', feedback_due = NULL",
                event.resolution_id,
                event.number,
                event.title,
                event.text,
                [unit.value for unit in event.responsible_units],
            )
        case ResolutionCirculated():
            # The circulated event's stream version names the round: a later circulation
            # opens a new round, in which no unit has answered yet.
            await connection.execute(
                "UPDATE known_resolutions SET status = 'circulated', circulation = $2, "
                "participants = $3, feedback_due = $4 WHERE resolution_id = $1",
                event.resolution_id,
                envelope.stream_version,
                [unit.value for unit in event.participants],
                event.feedback_due,
            )
        case FeedbackReceived():
            await connection.execute(
                "INSERT INTO feedback_given (resolution_id, circulation, unit) "
                "SELECT resolution_id, circulation, $2 FROM known_resolutions "
                "WHERE resolution_id = $1 ON CONFLICT DO NOTHING",
                event.resolution_id,
                event.unit.value,
            )
        case ResolutionAmended():
            await connection.execute(
                "UPDATE known_resolutions SET title = $2, text = $3 WHERE resolution_id = $1",
                event.resolution_id,
                event.title,
                event.text,
            )
        case ResolutionApproved():
            await _set_status(connection, event.resolution_id, "approved")
        case ResolutionSigned():
            await _set_status(connection, event.resolution_id, "signed")
        case ActionPlanAdopted():
            await _set_status(connection, event.resolution_id, "action_plan_adopted")
            await connection.executemany(
                "INSERT INTO known_actions (resolution_id, action_id, unit, description, "
                "due_on) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (resolution_id, action_id) "
                "DO UPDATE SET unit = EXCLUDED.unit, description = EXCLUDED.description, "
                "due_on = EXCLUDED.due_on, status = 'not_started', percent = 0",
                [
                    (
                        event.resolution_id,
                        action.action_id,
                        action.unit.value,
                        action.description,
                        action.due_on,
                    )
                    for action in event.actions
                ],
            )
        case ProgressReported():
            await connection.execute(
                "UPDATE known_actions SET status = $3, percent = $4 "
                "WHERE resolution_id = $1 AND action_id = $2",
                event.resolution_id,
                event.action_id,
                event.status.value,
                event.percent,
            )
        case ResolutionClosed():
            await _set_status(connection, event.resolution_id, "closed")
        case _:
            raise TypeError(f"not an event this service reads: {type(event).__name__}")


async def _set_status(connection: DbConnection, resolution_id: object, status: str) -> None:
    await connection.execute(
        "UPDATE known_resolutions SET status = $2 WHERE resolution_id = $1", resolution_id, status
    )
