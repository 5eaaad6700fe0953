"""The ``deliveries`` table: messages planned, claimed, sent or failed (plain SQL, asyncpg).

A delivery is inserted in the transaction of whatever caused it (the consumer's, for an
upstream event; the scheduler's, for a reminder) with ``ON CONFLICT DO NOTHING`` on its
derived id: the same cause planned twice is planned once. Inserting pending deliveries also
notifies ``PENDING_CHANNEL`` so the worker wakes at commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING
from uuid import UUID

from ipmg_contracts.notifications import Channel, NotificationKind
from ipmg_notifications.channels import OutgoingMessage
from ipmg_notifications.directory import Directory
from ipmg_notifications.domain import Notice, delivery_id, recipients
from ipmg_notifications.rendering import messages_for
from ipmg_shared.actors import Unit
from ipmg_shared.envelope import Envelope

if TYPE_CHECKING:
    from ipmg_shared.db import DbConnection

PENDING_CHANNEL = "ipmg_notifications_pending"
ERROR_MAX_CHARS = 2000


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


@dataclass(frozen=True)
class Cause:
    """The event a delivery answers: an upstream event, or a ReminderIssued of this service."""

    event_id: UUID
    type: str
    source: str
    correlation_id: UUID

    @classmethod
    def of(cls, envelope: Envelope) -> Cause:
        return cls(envelope.event_id, envelope.type, envelope.source, envelope.correlation_id)


# Leases and retry times are on the database's clock: they are about processes and servers,
# which live in real time. The service's clock (injectable, movable) dates what people see.
# Every row of an event in one statement, from arrays (one per column): an invitation goes to
# 29 members, and one execution inserting them all costs PostgreSQL half the CPU of 29.
_INSERT = """
INSERT INTO deliveries (
    delivery_id, cause_event_id, cause_type, cause_source, correlation_id, kind, channel,
    recipient, unit, person, address, subject, body_text, body_html, status, created_at,
    next_attempt_at)
SELECT *, now() FROM unnest(
    $1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::text[], $7::text[],
    $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
    $15::text[], $16::timestamptz[])
ON CONFLICT DO NOTHING
"""


def planned_rows(
    cause: Cause,
    notices: Iterable[Notice],
    directory: Directory,
    status: DeliveryStatus,
    now: datetime,
) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for notice, addressed_to in messages_for(notices):
        for recipient in recipients(notice, directory):
            message = addressed_to(recipient.person)
            rows.append(
                (
                    delivery_id(cause.event_id, recipient),
                    cause.event_id,
                    cause.type,
                    cause.source,
                    cause.correlation_id,
                    notice.kind.value,
                    recipient.channel.value,
                    recipient.key,
                    recipient.unit.value,
                    recipient.person,
                    recipient.address,
                    message.subject,
                    message.text,
                    message.html if recipient.channel is Channel.EMAIL else None,
                    status.value,
                    now,
                )
            )
    return rows


async def insert_deliveries(
    connection: DbConnection,
    cause: Cause,
    notices: Sequence[Notice],
    directory: Directory,
    *,
    status: DeliveryStatus,
    now: datetime,
) -> int:
    """Plan one delivery per recipient of each notice; returns how many were planned."""
    rows = planned_rows(cause, notices, directory, status, now)
    if not rows:
        return 0
    await connection.execute(_INSERT, *(list(column) for column in zip(*rows, strict=True)))
    if status is DeliveryStatus.PENDING:
        await connection.execute("SELECT pg_notify($1, '')", PENDING_CHANNEL)
    return len(rows)


@dataclass(frozen=True)
class ClaimedDelivery:
    message: OutgoingMessage
    cause_source: str
    round: int
    attempts: int  # attempts already made in this round

    @property
    def stream_id(self) -> str:
        return f"notification-{self.message.delivery_id}"


_CLAIM = """
UPDATE deliveries SET lease_until = now() + make_interval(secs => $1)
WHERE delivery_id = (
    SELECT delivery_id FROM deliveries
    WHERE status = 'pending' AND next_attempt_at <= now()
      AND (lease_until IS NULL OR lease_until <= now())
    ORDER BY next_attempt_at, created_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED)
RETURNING delivery_id, kind, channel, unit, person, address, subject, body_text, body_html,
          cause_event_id, cause_type, cause_source, correlation_id, round, attempts
"""


async def claim_next(connection: DbConnection, lease_s: float) -> ClaimedDelivery | None:
    """Lease the next due delivery to this worker; others skip it until the lease ends."""
    row = await connection.fetchrow(_CLAIM, lease_s)
    if row is None:
        return None
    message = OutgoingMessage(
        delivery_id=row["delivery_id"],
        kind=NotificationKind(row["kind"]),
        channel=Channel(row["channel"]),
        unit=Unit(row["unit"]),
        person=row["person"],
        address=row["address"],
        subject=row["subject"],
        text=row["body_text"],
        html=row["body_html"],
        cause_event_id=row["cause_event_id"],
        cause_type=row["cause_type"],
        correlation_id=row["correlation_id"],
    )
    return ClaimedDelivery(message, row["cause_source"], row["round"], row["attempts"])


async def mark_finished(
    connection: DbConnection,
    claimed: ClaimedDelivery,
    status: DeliveryStatus,
    *,
    attempts: int,
    error: str | None,
    outcome_event_id: UUID,
    now: datetime,
) -> None:
    await connection.execute(
        "UPDATE deliveries SET status = $3, attempts = $4, last_error = coalesce($5, last_error),"
        " outcome_event_id = $6, finished_at = $7, lease_until = NULL "
        "WHERE delivery_id = $1 AND round = $2 AND status = 'pending'",
        claimed.message.delivery_id,
        claimed.round,
        status.value,
        attempts,
        error,
        outcome_event_id,
        now,
    )


async def schedule_retry(
    connection: DbConnection,
    claimed: ClaimedDelivery,
    *,
    attempts: int,
    error: str,
    delay_s: float,
) -> None:
    await connection.execute(
        "UPDATE deliveries SET attempts = $3, last_error = $4, "
        "next_attempt_at = now() + make_interval(secs => $5), lease_until = NULL "
        "WHERE delivery_id = $1 AND round = $2 AND status = 'pending'",
        claimed.message.delivery_id,
        claimed.round,
        attempts,
        error[:ERROR_MAX_CHARS],
        delay_s,
    )


async def requeue_failed(connection: DbConnection, delivery_ids: Sequence[UUID] = ()) -> list[UUID]:
    """Send failed deliveries again (all, or those named) in a new round; returns their ids.

    The earlier round's NotificationFailed stays in history; the new round's outcome is the
    next event of the same stream. They are due at once.
    """
    rows = await connection.fetch(
        "UPDATE deliveries SET status = 'pending', round = round + 1, attempts = 0, "
        "next_attempt_at = now(), lease_until = NULL, finished_at = NULL "
        "WHERE status = 'failed' AND (cardinality($1::uuid[]) = 0 OR delivery_id = ANY($1)) "
        "RETURNING delivery_id",
        list(delivery_ids),
    )
    return [row["delivery_id"] for row in rows]
