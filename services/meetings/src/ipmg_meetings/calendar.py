"""The meetings calendar, read from this service's own event store for the rotation rules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request

from ipmg_meetings.rotation import Calendar, CalendarEntry
from ipmg_shared.runtime import ServiceContext

if TYPE_CHECKING:
    from ipmg_shared.db import DbConnection

# Each meeting's latest scheduling fact and whether it was called as extraordinary; the
# database picks the latest per stream so a command does not fold every stored event.
CALENDAR = """
SELECT (first.payload->>'meeting_id')::uuid AS meeting_id,
       coalesce(latest.payload->>'held_on', latest.payload->>'scheduled_for') AS "on",
       latest.payload->>'host_unit' AS host_unit,
       latest.payload->>'venue' AS venue,
       coalesce((first.payload->>'extraordinary')::boolean, false) AS extraordinary
FROM (
    SELECT DISTINCT ON (stream_id) stream_id, type, payload FROM events
    WHERE type IN ('MeetingScheduled', 'MeetingRescheduled', 'MeetingHeld', 'MeetingCancelled')
    ORDER BY stream_id, position DESC
) AS latest
JOIN events AS first ON first.stream_id = latest.stream_id AND first.stream_version = 1
WHERE latest.type <> 'MeetingCancelled'
"""


async def read_calendar(connection: DbConnection) -> Calendar:
    """Every meeting scheduled or held so far, on its current date (cancelled ones left out)."""
    rows = await connection.fetch(CALENDAR)
    return tuple(CalendarEntry.model_validate(dict(row)) for row in rows)


async def with_calendar(request: Request, fields: dict[str, Any]) -> dict[str, Any]:
    context: ServiceContext = request.app.state.context
    async with context.pool.acquire(timeout=context.settings.pool_acquire_timeout_s) as db:
        return {**fields, "calendar": await read_calendar(db)}
