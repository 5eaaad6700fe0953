"""The delivery worker: claims due deliveries, sends them, records each round's outcome.

Per attempt: lease the delivery (``FOR UPDATE SKIP LOCKED``, so workers never share one),
check that this round's outcome is not already in the store (a crash after recording but
before marking must not send again), send, then append ``NotificationSent`` or, once the
retries are spent, ``NotificationFailed`` with a command id derived from the delivery and
round (an idempotent append), and mark the delivery. A failed attempt before the last one is
rescheduled with exponential backoff and jitter; the attempt count lives in the table, so a
restart neither forgets it nor starts over.

The one window left is between the server accepting a message and the outcome being
recorded: a crash there sends that message again when the lease ends. Both channels carry
the delivery id (``Message-ID``, ``X-IPMG-Delivery``) so the receiver can recognise it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import asyncpg
from prometheus_client import Counter

from ipmg_contracts.notifications import NotificationFailed, NotificationSent
from ipmg_notifications.channels import DeliveryError, Senders
from ipmg_notifications.deliveries import (
    PENDING_CHANNEL,
    ClaimedDelivery,
    DeliveryStatus,
    claim_next,
    mark_finished,
    schedule_retry,
)
from ipmg_notifications.domain import RetryPolicy, retry_delay
from ipmg_shared.actors import Actor
from ipmg_shared.consumer import TRANSIENT_ERRORS
from ipmg_shared.db import connect
from ipmg_shared.logging import get_logger
from ipmg_shared.settings import Settings
from ipmg_shared.store import AppendResult, CommandId, EventStore, NewEvent

log = get_logger("ipmg.notifications.worker")

NOTIFICATIONS = Counter(
    "ipmg_notifications_total",
    "Deliveries finished by the notifications service, by channel and outcome",
    ["channel", "outcome"],
)
MAX_FAULT_BACKOFF_S = 10.0
RECORD_ATTEMPTS = 5
FINISH_IN_HAND_S = 15.0  # within the HTTP server's graceful shutdown

ACTOR = Actor.service("notifications")


def outcome_command(claimed: ClaimedDelivery) -> CommandId:
    """One outcome per delivery and round, whatever happens around it."""
    key = f"notification:{claimed.message.delivery_id}:round-{claimed.round}"
    request = {"delivery_id": str(claimed.message.delivery_id), "round": claimed.round}
    return CommandId.of(key, request)


class DeliveryWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        store: EventStore,
        senders: Senders,
        policy: RetryPolicy,
        *,
        clock: Callable[[], datetime],
        lease_s: float,
        poll_interval_s: float,
        acquire_timeout_s: float = 10.0,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.pool = pool
        self.store = store
        self.senders = senders
        self.policy = policy
        self.clock = clock
        self.lease_s = lease_s
        self.poll_interval_s = poll_interval_s
        self.jitter = jitter
        self.acquire_timeout_s = acquire_timeout_s
        self._wake = asyncio.Event()

    async def run(self, settings: Settings, dsn: str, concurrency: int) -> None:
        """Work until cancelled: ``concurrency`` workers, woken by NOTIFY when deliveries are
        planned, and polling every ``poll_interval_s`` (for retries that fall due)."""
        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(self._work())
            group.create_task(self._listen(settings, dsn))

    async def _listen(self, settings: Settings, dsn: str) -> None:
        backoff = 0.5
        while True:
            try:
                await self._listen_until_closed(settings, dsn)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the listener is an optimisation: polling goes on
                log.warning("delivery_listener_fault", error=repr(error), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_FAULT_BACKOFF_S)
            else:  # the connection was closed after it served: reconnect, gently
                backoff = 0.5
                await asyncio.sleep(backoff)

    async def _listen_until_closed(self, settings: Settings, dsn: str) -> None:
        connection = await connect(dsn, settings)
        try:
            closed = asyncio.Event()
            connection.add_termination_listener(lambda *_: closed.set())
            await connection.add_listener(PENDING_CHANNEL, lambda *_: self._wake.set())
            await closed.wait()
            log.warning("delivery_listener_closed")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)

    async def _work(self) -> None:
        backoff = 0.5
        while True:
            try:
                self._wake.clear()
                if not await self.deliver_next():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the worker must outlive any fault
                log.warning("delivery_worker_fault", error=repr(error), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_FAULT_BACKOFF_S)

    async def deliver_next(self) -> bool:
        """One attempt at the next due delivery; False when none was due.

        Stopping does not interrupt it: a claim abandoned halfway would sit leased until its
        lease ends, and a message the server took but nobody recorded would go again.
        """
        in_hand = asyncio.ensure_future(self._claim_and_attempt())
        try:
            return await asyncio.shield(in_hand)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(in_hand, FINISH_IN_HAND_S)
            raise

    async def _claim_and_attempt(self) -> bool:
        async with self.pool.acquire(timeout=self.acquire_timeout_s) as connection:
            claimed = await claim_next(connection, self.lease_s)
        if claimed is None:
            return False
        await self.attempt(claimed)
        return True

    async def attempt(self, claimed: ClaimedDelivery) -> None:
        command = outcome_command(claimed)
        earlier = await self.store.earlier_result(command)
        if earlier is not None:
            await self._finish_recorded(claimed, earlier)
            return
        message = claimed.message
        attempts = claimed.attempts + 1
        try:
            await self.senders[message.channel].send(message, self.clock())
        except Exception as error:  # a channel's bug counts as a failed attempt, not a hang
            reason = _reason(error)
            if not self.policy.gives_up_after(attempts):
                delay = retry_delay(self.policy, attempts, self.jitter())
                log.info(
                    "delivery_attempt_failed",
                    delivery_id=str(message.delivery_id),
                    attempts=attempts,
                    error=reason,
                    retry_in=round(delay, 3),
                )
                async with self.pool.acquire(timeout=self.acquire_timeout_s) as connection:
                    await schedule_retry(
                        connection,
                        claimed,
                        attempts=attempts,
                        error=reason,
                        delay_s=delay,
                    )
                return
            log.warning("delivery_failed", delivery_id=str(message.delivery_id), attempts=attempts)
            await self._record(claimed, DeliveryStatus.FAILED, attempts, reason[:2000])
            return
        await self._record(claimed, DeliveryStatus.SENT, attempts, None)

    async def _record(
        self, claimed: ClaimedDelivery, status: DeliveryStatus, attempts: int, error: str | None
    ) -> None:
        message = claimed.message
        fields = {
            "delivery_id": message.delivery_id,
            "cause_event_id": message.cause_event_id,
            "cause_type": message.cause_type,
            "cause_source": claimed.cause_source,
            "kind": message.kind,
            "channel": message.channel,
            "unit": message.unit,
            "person": message.person,
            "address": message.address,
            "subject": message.subject,
            "attempts": attempts,
        }
        payload = (
            NotificationSent(**fields)
            if status is DeliveryStatus.SENT
            else NotificationFailed(**fields, error=error or "unknown error")
        )
        # Sent but not yet recorded is the costly state: keep trying through a brief
        # database fault rather than let the lease lapse and the message go out again.
        backoff = 0.2
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                now = self.clock()
                result = await self.store.append(
                    claimed.stream_id,
                    claimed.round - 1,
                    [NewEvent(payload, occurred_at=now)],
                    actor=ACTOR,
                    correlation_id=message.correlation_id,
                    causation_id=message.cause_event_id,
                    command=outcome_command(claimed),
                )
                async with self.pool.acquire(timeout=self.acquire_timeout_s) as connection:
                    await mark_finished(
                        connection,
                        claimed,
                        status,
                        attempts=attempts,
                        error=error,
                        outcome_event_id=_first_event_id(result),
                        now=now,
                    )
                break
            except TRANSIENT_ERRORS:
                if attempt == RECORD_ATTEMPTS:
                    raise
                await asyncio.sleep(backoff)
                backoff *= 2
        NOTIFICATIONS.labels(message.channel.value, status.value).inc()

    async def _finish_recorded(self, claimed: ClaimedDelivery, earlier: AppendResult) -> None:
        """The outcome was appended before a crash: mark it, send nothing."""
        recorded = await self.store.read_stream(claimed.stream_id, after_version=claimed.round - 1)
        outcome = recorded[0]
        sent = outcome.type == NotificationSent.event_type
        status = DeliveryStatus.SENT if sent else DeliveryStatus.FAILED
        async with self.pool.acquire(timeout=self.acquire_timeout_s) as connection:
            await mark_finished(
                connection,
                claimed,
                status,
                attempts=int(outcome.payload["attempts"]),
                error=outcome.payload.get("error"),
                outcome_event_id=_first_event_id(earlier),
                now=self.clock(),
            )


def _reason(error: Exception) -> str:
    if isinstance(error, DeliveryError):
        return str(error) or "the channel refused the message"
    return f"{type(error).__name__}: {error}"


def _first_event_id(result: AppendResult) -> UUID:
    return UUID(result.event_ids[0])
