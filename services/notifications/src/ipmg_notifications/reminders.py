"""The reminder scheduler: feedback reminders, action follow-ups and the quarterly digest.

On each tick it reads the open deadlines from the service's own projection, asks the domain
which reminders are due on the clock's day, and issues each one not issued before:

1. append ``ReminderIssued`` to the stream named by the reminder's key, expected at version
   0 and with a command id of the same key: a second issue (another instance, or a retry
   after a crash) gets the first one's result back and appends nothing;
2. in one transaction, record the key in ``reminders`` and plan the reminder's deliveries,
   whose cause is the ReminderIssued event (so they too are planned once).

The clock is injected: tests move it past a due date instead of waiting for one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING
from uuid import UUID, uuid5

import asyncpg

from ipmg_contracts.notifications import ReminderIssued, ReminderKind
from ipmg_contracts.resolutions import ProgressStatus
from ipmg_notifications.deliveries import Cause, DeliveryStatus, insert_deliveries
from ipmg_notifications.directory import Directory
from ipmg_notifications.domain import (
    IDENTITY_NAMESPACE,
    ActionDeadline,
    FeedbackDeadline,
    QuarterFigures,
    ReminderDue,
    ReminderPolicy,
    ResolutionFacts,
    quarter_bounds,
    reminder_notice,
    reminders_due,
)
from ipmg_shared.actors import Actor, Unit
from ipmg_shared.logging import get_logger
from ipmg_shared.store import CommandId, EventStore, NewEvent

if TYPE_CHECKING:
    from ipmg_shared.db import DbConnection

log = get_logger("ipmg.notifications.reminders")

ACTOR = Actor.service("notifications")
MAX_FAULT_BACKOFF_S = 60.0

_FEEDBACK_DEADLINES = """
SELECT r.resolution_id, r.number, r.title, r.text, r.responsible_units, r.feedback_due,
       p.unit,
       EXISTS (SELECT 1 FROM feedback_given f
               WHERE f.resolution_id = r.resolution_id AND f.circulation = r.circulation
                 AND f.unit = p.unit) AS answered
FROM known_resolutions r CROSS JOIN LATERAL unnest(r.participants) AS p(unit)
WHERE r.status = 'circulated' AND r.feedback_due IS NOT NULL
ORDER BY r.number, r.resolution_id, p.unit
"""

_ACTION_DEADLINES = """
SELECT r.resolution_id, r.number, r.title, r.text, r.responsible_units,
       a.action_id, a.unit, a.description, a.due_on, a.status, a.percent
FROM known_actions a JOIN known_resolutions r USING (resolution_id)
WHERE r.status = 'action_plan_adopted'
ORDER BY a.due_on, r.number, a.action_id
"""


def _resolution(row: asyncpg.Record) -> ResolutionFacts:
    return ResolutionFacts(
        row["resolution_id"],
        row["number"],
        row["title"],
        row["text"],
        tuple(Unit(unit) for unit in row["responsible_units"]),
    )


async def open_deadlines(
    connection: DbConnection,
) -> tuple[list[FeedbackDeadline], list[ActionDeadline]]:
    """Feedback awaited on circulated resolutions, and actions of adopted, open plans."""
    feedback = [
        FeedbackDeadline(_resolution(row), Unit(row["unit"]), row["feedback_due"], row["answered"])
        for row in await connection.fetch(_FEEDBACK_DEADLINES)
    ]
    actions = [
        ActionDeadline(
            _resolution(row),
            row["action_id"],
            Unit(row["unit"]),
            row["description"],
            row["due_on"],
            ProgressStatus(row["status"]),
            row["percent"],
        )
        for row in await connection.fetch(_ACTION_DEADLINES)
    ]
    return feedback, actions


class ReminderScheduler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        store: EventStore,
        directory: Directory,
        policy: ReminderPolicy,
        *,
        clock: Callable[[], datetime],
        timezone: tzinfo,
        acquire_timeout_s: float = 10.0,
    ) -> None:
        self.pool = pool
        self.store = store
        self.directory = directory
        self.policy = policy
        self.clock = clock
        self.timezone = timezone
        self.acquire_timeout_s = acquire_timeout_s

    def today(self) -> date:
        return self.clock().astimezone(self.timezone).date()

    async def run(self, interval_s: float) -> None:
        backoff = 1.0
        while True:
            try:
                await self.tick()
                backoff = 1.0
                await asyncio.sleep(interval_s)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the scheduler must outlive any fault
                log.warning("reminder_tick_failed", error=repr(error), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_FAULT_BACKOFF_S)

    async def tick(self) -> list[ReminderDue]:
        """Issue every reminder due today that was not issued before; returns those issued."""
        today = self.today()
        async with self.pool.acquire(timeout=self.acquire_timeout_s) as connection:
            feedback, actions = await open_deadlines(connection)
            due = reminders_due(today, feedback, actions, self.policy)
            if not due:
                return []
            # Only keys young enough to be due can be found: older ones need not be read.
            oldest = today - timedelta(days=self.policy.stale_after_days + 1)
            issued = {
                (row["kind"], row["entity"], row["unit"], row["due_on"])
                for row in await connection.fetch(
                    "SELECT kind, entity, unit, due_on FROM reminders WHERE due_on >= $1", oldest
                )
            }
        fresh = [reminder for reminder in due if reminder.key not in issued]
        for reminder in fresh:
            await self.issue(reminder, today, feedback, actions)
        return fresh

    async def issue(
        self,
        reminder: ReminderDue,
        today: date,
        feedback: Sequence[FeedbackDeadline],
        actions: Sequence[ActionDeadline],
    ) -> UUID:
        now = self.clock()
        if reminder.kind is ReminderKind.QUARTERLY_DIGEST:
            notice = reminder_notice(
                reminder,
                today,
                figures=await self._figures(reminder),
                open_feedback=feedback,
                overdue_actions=[
                    action
                    for action in actions
                    if action.due_on < today and action.status is not ProgressStatus.COMPLETED
                ],
            )
        else:
            notice = reminder_notice(reminder, today)
        correlation_id = uuid5(IDENTITY_NAMESPACE, f"reminder|{reminder.stream_id}")
        result = await self.store.append(
            reminder.stream_id,
            0,
            [
                NewEvent(
                    ReminderIssued(
                        reminder_kind=reminder.kind,
                        entity=reminder.entity,
                        unit=reminder.unit,
                        due_on=reminder.due_on,
                        resolution_id=reminder.resolution_id,
                        action_id=reminder.action_id,
                        quarter=reminder.quarter,
                    ),
                    occurred_at=now,
                )
            ],
            actor=ACTOR,
            correlation_id=correlation_id,
            command=CommandId.of(f"reminder:{reminder.stream_id}", {"key": reminder.stream_id}),
        )
        event_id = UUID(result.event_ids[0])
        async with (
            self.pool.acquire(timeout=self.acquire_timeout_s) as connection,
            connection.transaction(),
        ):
            await connection.execute(
                "INSERT INTO reminders (kind, entity, unit, due_on, event_id, issued_at) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                reminder.kind.value,
                reminder.entity,
                reminder.unit.value,
                reminder.due_on,
                event_id,
                now,
            )
            await insert_deliveries(
                connection,
                Cause(event_id, ReminderIssued.event_type, self.store.source, correlation_id),
                [notice],
                self.directory,
                status=DeliveryStatus.PENDING,
                now=now,
            )
        log.info("reminder_issued", key=list(map(str, reminder.key)), event_id=str(event_id))
        return event_id

    async def _figures(self, reminder: ReminderDue) -> QuarterFigures:
        assert reminder.quarter is not None
        first, after = quarter_bounds(reminder.quarter)
        start = datetime.combine(first, time(), self.timezone)
        end = datetime.combine(after, time(), self.timezone)
        async with self.pool.acquire(timeout=self.acquire_timeout_s) as connection:
            deliveries = await connection.fetchrow(
                "SELECT count(*) FILTER (WHERE status = 'sent') AS sent, "
                "count(*) FILTER (WHERE status = 'failed') AS failed "
                "FROM deliveries WHERE finished_at >= $1 AND finished_at < $2",
                start,
                end,
            )
            reminders = await connection.fetchrow(
                "SELECT count(*) FILTER (WHERE kind = 'feedback_due') AS reminders, "
                "count(*) FILTER (WHERE kind = 'action_overdue') AS follow_ups "
                "FROM reminders WHERE issued_at >= $1 AND issued_at < $2",
                start,
                end,
            )
        assert deliveries is not None
        assert reminders is not None
        return QuarterFigures(
            sent=deliveries["sent"],
            failed=deliveries["failed"],
            reminders=reminders["reminders"],
            follow_ups=reminders["follow_ups"],
        )
