"""Consumers of the resolutions service: its own copy of which meetings were held."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from ipmg_contracts.meetings import REGISTRY as MEETING_EVENTS
from ipmg_contracts.meetings import MeetingCancelled, MeetingHeld, MeetingScheduled
from ipmg_resolutions.domain import HeldMeetingFacts, MeetingStatus
from ipmg_shared.consumer import GATHER_MS_IN_THE_BACKGROUND, Subscription
from ipmg_shared.envelope import Envelope
from ipmg_shared.events import DomainEvent
from ipmg_shared.runtime import ServiceContext

if TYPE_CHECKING:
    from ipmg_shared.db import DbConnection


async def record_meeting(
    connection: DbConnection, envelope: Envelope, event: DomainEvent, _published: bytes
) -> None:
    match event:
        case MeetingScheduled():
            await connection.execute(
                "INSERT INTO known_meetings (meeting_id, status) VALUES ($1, 'scheduled') "
                "ON CONFLICT (meeting_id) DO NOTHING",
                event.meeting_id,
            )
        case MeetingCancelled():
            await _set(connection, event.meeting_id, MeetingStatus.CANCELLED, None, None)
        case MeetingHeld():
            await _set(
                connection, event.meeting_id, MeetingStatus.HELD, event.held_on, event.host_unit
            )
        case _:
            pass  # rescheduling and minutes change nothing a resolution depends on


async def _set(
    connection: DbConnection,
    meeting_id: UUID,
    status: MeetingStatus,
    held_on: object,
    host_unit: object,
) -> None:
    await connection.execute(
        "INSERT INTO known_meetings (meeting_id, status, held_on, host_unit) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (meeting_id) DO UPDATE SET status = $2, "
        "held_on = $3, host_unit = $4, updated_at = now()",
        meeting_id,
        status.value,
        held_on,
        host_unit,
    )


async def meeting_facts(connection: DbConnection, meeting_id: UUID) -> HeldMeetingFacts | None:
    row = await connection.fetchrow(
        "SELECT meeting_id, status, held_on, host_unit FROM known_meetings WHERE meeting_id = $1",
        meeting_id,
    )
    return None if row is None else HeldMeetingFacts.model_validate(dict(row))


async def numbers_taken(connection: DbConnection, meeting_id: UUID) -> tuple[int, ...]:
    """The numbers of the resolutions passed so far at ``meeting_id``, from this service's store."""
    rows = await connection.fetch(
        "SELECT (payload->>'number')::int AS number FROM events "
        "WHERE type = 'ResolutionPassed' AND payload->>'meeting_id' = $1",
        str(meeting_id),
    )
    return tuple(row["number"] for row in rows)


async def resolution_exists(connection: DbConnection, resolution_id: UUID) -> bool:
    found = await connection.fetchval(
        "SELECT 1 FROM events WHERE stream_id = $1 LIMIT 1", f"resolution-{resolution_id}"
    )
    return found is not None


def subscriptions(context: ServiceContext) -> list[Subscription]:
    return [
        Subscription(
            consumer="resolutions",
            sources={"meetings": MEETING_EVENTS},
            handler=record_meeting,
            topic_names=context.settings.topics,
            max_attempts=context.settings.consumer_max_attempts,
            gather_ms=GATHER_MS_IN_THE_BACKGROUND,
        )
    ]
