"""Effectively-once consumption of event topics.

A handler gets the decoded, upcast event (and the record's value as published) and a database
connection inside a transaction; its effect and the consumer's checkpoint (per stream: last
version; per source: last position) commit together, and only then is the Kafka offset
committed. A redelivered event is skipped by its stream version; a version beyond the next
expected one is a gap, reported and dead-lettered, never silently skipped. Messages that cannot
be processed go to the dead-letter topic with the reason; the consumer goes on with the next
one.

Records that wait together are applied together: one transaction, one commit for all of them,
each checked by its stream version as if alone. Whatever goes wrong in such a batch rolls all of
it back, and its records are then taken one at a time, so a bad record fails only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

import asyncpg
import structlog
from pydantic import ValidationError

from ipmg_shared.checkpoints import SYSTEM_EVENTS
from ipmg_shared.db import UNAVAILABLE_ERRORS
from ipmg_shared.envelope import Envelope
from ipmg_shared.events import DomainEvent, EventDecodingError, EventRegistry
from ipmg_shared.logging import get_logger
from ipmg_shared.metrics import DEAD_LETTERS, EVENTS_CONSUMED, STREAM_GAPS
from ipmg_shared.settings import TopicNames

if TYPE_CHECKING:
    from ipmg_shared.db import DbConnection

log = get_logger("ipmg.consumer")

# Faults of the infrastructure, not of the message: wait and take the same message again.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    *UNAVAILABLE_ERRORS,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)


# Both checkpoints (per stream and per source) in one statement: one round trip, in the
# transaction of the handler's effect. The stream's moves only from the version before: a
# stream's first event has no row to lock when it is read, so the same event handled at once
# by two consumers (its topic's and the retry topic's) leaves one transaction moving nothing;
# it returns no row and is rolled back as a duplicate.
CHECKPOINT = """
WITH stream AS (
    INSERT INTO consumer_streams (consumer, stream_id, last_version) VALUES ($1, $2, $3)
    ON CONFLICT (consumer, stream_id) DO UPDATE SET last_version = EXCLUDED.last_version
    WHERE consumer_streams.last_version = EXCLUDED.last_version - 1
    RETURNING last_version
), source AS (
    INSERT INTO consumer_sources (consumer, source, last_position, events_applied)
    SELECT $1, $4, $5, 1 FROM stream ON CONFLICT (consumer, source) DO UPDATE SET
        last_position = greatest(consumer_sources.last_position, EXCLUDED.last_position),
        events_applied = consumer_sources.events_applied + 1, updated_at = now()
)
SELECT last_version FROM stream
"""


# The checkpoints of every stream a transaction applies, locked in one statement and in one
# order (so two transactions locking some of the same rows cannot deadlock). A stream's
# first event has no row yet: CHECKPOINT settles that case.
LOCK_CHECKPOINTS = """
SELECT stream_id, last_version FROM consumer_streams
WHERE consumer = $1 AND stream_id = ANY($2::text[])
ORDER BY stream_id FOR UPDATE
"""


# A ``gather_ms`` for consumers that no one watches event by event (mail being planned, a
# meeting's status learnt by another service): under load, events a few milliseconds apart
# are applied in one transaction after one wake-up, not one each; each waits up to this long.
GATHER_MS_IN_THE_BACKGROUND = 50


class EventHandler(Protocol):
    """``published``: the record's value, the envelope's JSON exactly as it was published (a
    handler that keeps a copy of the log keeps these bytes, with nothing rendered again)."""

    async def __call__(
        self, connection: DbConnection, envelope: Envelope, event: DomainEvent, published: bytes, /
    ) -> None: ...


TransactionStart = Callable[["DbConnection"], Awaitable[None]]


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead_lettered"
    RETRY_LATER = "retry_later"  # infrastructure fault: do not commit the offset


@dataclass(frozen=True)
class DeadLetter:
    reason: str  # short, stable: undecodable, forged_source, unknown_type, stream_gap, ...
    error: str  # the detail for people


class AppliedMeanwhile(Exception):
    """Another consumer applied the same event while this one was applying it."""


class StreamGap(Exception):
    def __init__(self, stream_id: str, expected: int, found: int) -> None:
        super().__init__(f"stream {stream_id}: expected version {expected}, got {found}")
        self.stream_id = stream_id
        self.expected = expected
        self.found = found


@dataclass(frozen=True)
class Delivery:
    """One Kafka record as the runner sees it (independent of the client library)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Received:
    """A record decoded: its envelope, the upcast event, and the value it was decoded from."""

    envelope: Envelope
    event: DomainEvent
    published: bytes


DeadLetterSink = Callable[[Delivery, DeadLetter, str], Awaitable[None]]


@dataclass
class Subscription:
    """What one consumer reads: for each source, the event types it understands."""

    consumer: str
    sources: Mapping[str, EventRegistry]
    handler: EventHandler
    topic_names: TopicNames = field(default_factory=TopicNames)
    max_attempts: int = 3
    retry_backoff_s: float = 0.2
    # A Kafka consumer per topic, so a slow fetch of one topic never holds back another's
    # records; the handler then runs concurrently across topics (streams stay in order: a
    # stream is on one topic, and the checkpoint settles a redriven copy, see CHECKPOINT).
    consumer_per_topic: bool = False
    # How long the broker may hold a fetch to gather records (0: answer with the first). A
    # consumer whose readers can wait that long then applies the events of a busy moment in
    # one transaction, and wakes once for them, where each came alone; a backlog still comes
    # at once (``runtime.fetch_options``).
    gather_ms: int = 0
    # Run first in each of the consumer's transactions, before its checkpoints are read: e.g.
    # a lock that the handler's tables need for the whole transaction.
    on_transaction_start: TransactionStart | None = None
    topics: list[str] = field(init=False)
    registries: dict[str, EventRegistry] = field(init=False)

    def __post_init__(self) -> None:
        # Checkpoints and other system events travel on every write topic; known to all.
        self.registries = {
            source: registry.merge(SYSTEM_EVENTS) for source, registry in self.sources.items()
        }
        names = self.topic_names
        self.topics = [names.events(source) for source in self.sources]
        self.topics.append(names.retry(self.consumer))

    def expected_sources(self, topic: str) -> set[str]:
        if topic == self.topic_names.retry(self.consumer):
            return set(self.sources)
        return {source for source in self.sources if self.topic_names.events(source) == topic}


class ConsumerRunner:
    def __init__(
        self,
        subscription: Subscription,
        pool: asyncpg.Pool,
        dead_letter: DeadLetterSink,
        *,
        acquire_timeout_s: float = 10.0,
    ) -> None:
        self.subscription = subscription
        self.pool = pool
        self._dead_letter = dead_letter
        self._acquire_timeout_s = acquire_timeout_s

    @property
    def consumer(self) -> str:
        return self.subscription.consumer

    async def process_batch(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        """Handle records in order, in one transaction when all goes well.

        Returns an outcome for each record handled, in order. Only the last can be
        ``RETRY_LATER``: that record and those after it were not handled and are to be taken
        again (the ones before it were, and would come again as duplicates).
        """
        if len(deliveries) == 1:
            return [await self.process(deliveries[0])]
        decoded = [self._decode(delivery) for delivery in deliveries]
        events = [item for item in decoded if not isinstance(item, DeadLetter)]
        try:
            applied = await self._apply_together(events)
        except TRANSIENT_ERRORS as error:
            log.warning("consumer_infrastructure_fault", error=repr(error))
            return [Outcome.RETRY_LATER]
        except Exception as error:  # a gap, a handler's error, a race: each record alone
            log.info("consumer_batch_taken_one_by_one", records=len(deliveries), error=repr(error))
            return await self._process_one_by_one(deliveries)
        outcomes: list[Outcome] = []
        results = iter(applied)
        for delivery, item in zip(deliveries, decoded, strict=True):
            if isinstance(item, DeadLetter):
                outcomes.append(await self._send_to_dead_letter(delivery, item, "unknown"))
            else:
                outcome = next(results)
                EVENTS_CONSUMED.labels(self.consumer, item.envelope.source, outcome.value).inc()
                outcomes.append(outcome)
        return outcomes

    async def _process_one_by_one(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for delivery in deliveries:
            outcomes.append(await self.process(delivery))
            if outcomes[-1] is Outcome.RETRY_LATER:
                break
        return outcomes

    async def process(self, delivery: Delivery) -> Outcome:
        """Handle one record; never raises for anything the record itself can cause."""
        decoded = self._decode(delivery)
        if isinstance(decoded, DeadLetter):
            return await self._send_to_dead_letter(delivery, decoded, source="unknown")
        envelope = decoded.envelope
        with _logged_as(envelope):
            for attempt in range(1, self.subscription.max_attempts + 1):
                try:
                    (outcome,) = await self._apply_together([decoded])
                except TRANSIENT_ERRORS as error:
                    log.warning("consumer_infrastructure_fault", error=repr(error))
                    return Outcome.RETRY_LATER
                except AppliedMeanwhile:
                    EVENTS_CONSUMED.labels(
                        self.consumer, envelope.source, Outcome.DUPLICATE.value
                    ).inc()
                    return Outcome.DUPLICATE
                except StreamGap as gap:
                    STREAM_GAPS.labels(self.consumer, envelope.source).inc()
                    log.error("stream_version_gap", stream_id=gap.stream_id, detail=str(gap))
                    return await self._send_to_dead_letter(
                        delivery, DeadLetter("stream_gap", str(gap)), envelope.source
                    )
                except Exception as error:  # a handler bug must not stop the consumer
                    if attempt == self.subscription.max_attempts:
                        log.exception("handler_failed", attempts=attempt)
                        return await self._send_to_dead_letter(
                            delivery,
                            DeadLetter("handler_error", f"{type(error).__name__}: {error}"),
                            envelope.source,
                        )
                    await asyncio.sleep(self.subscription.retry_backoff_s * 2 ** (attempt - 1))
                else:
                    EVENTS_CONSUMED.labels(self.consumer, envelope.source, outcome.value).inc()
                    return outcome
            raise AssertionError("unreachable: the last attempt returns")

    def _decode(self, delivery: Delivery) -> Received | DeadLetter:
        try:
            envelope = Envelope.from_bytes(delivery.value)
        except ValidationError as error:
            return DeadLetter("undecodable", _first_error(error))
        expected = self.subscription.expected_sources(delivery.topic)
        header_source = dict(delivery.headers).get("source")
        if envelope.source not in expected or (
            header_source is not None and header_source.decode(errors="replace") != envelope.source
        ):
            return DeadLetter(
                "forged_source",
                f"source {envelope.source!r} does not publish on {delivery.topic}",
            )
        registry = self.subscription.registries[envelope.source]
        try:
            return Received(envelope, envelope.decode(registry), delivery.value)
        except EventDecodingError as error:
            return DeadLetter(
                "unknown_type" if not registry.knows(envelope.type) else "bad_payload", str(error)
            )

    async def _apply_together(self, events: Sequence[Received]) -> list[Outcome]:
        """Each event checked and applied in turn, all in one transaction: all or none."""
        outcomes: list[Outcome] = []
        if not events:
            return outcomes
        async with (
            self.pool.acquire(timeout=self._acquire_timeout_s) as connection,
            connection.transaction(),
        ):
            if self.subscription.on_transaction_start is not None:
                await self.subscription.on_transaction_start(connection)
            streams = sorted({received.envelope.stream_id for received in events})
            versions: dict[str, int] = {
                row["stream_id"]: row["last_version"]
                for row in await connection.fetch(LOCK_CHECKPOINTS, self.consumer, streams)
            }
            for received in events:
                with _logged_as(received.envelope):
                    outcomes.append(await self._apply_in(connection, received, versions))
        return outcomes

    async def _apply_in(
        self, connection: DbConnection, received: Received, versions: dict[str, int]
    ) -> Outcome:
        """One event checked against its stream's version (kept up to date in ``versions``)."""
        envelope = received.envelope
        last_version = versions.get(envelope.stream_id, 0)
        if envelope.stream_version <= last_version:
            return Outcome.DUPLICATE
        if envelope.stream_version != last_version + 1:
            raise StreamGap(envelope.stream_id, last_version + 1, envelope.stream_version)
        if not SYSTEM_EVENTS.knows(envelope.type):
            await self.subscription.handler(
                connection, envelope, received.event, received.published
            )
        moved = await connection.fetchval(
            CHECKPOINT,
            self.consumer,
            envelope.stream_id,
            envelope.stream_version,
            envelope.source,
            envelope.position,
        )
        if moved is None:
            raise AppliedMeanwhile(envelope.stream_id)  # rolls the handler's effect back
        versions[envelope.stream_id] = envelope.stream_version
        return Outcome.APPLIED

    async def _send_to_dead_letter(
        self, delivery: Delivery, letter: DeadLetter, source: str
    ) -> Outcome:
        await self._dead_letter(delivery, letter, self.consumer)
        DEAD_LETTERS.labels(self.consumer, letter.reason).inc()
        EVENTS_CONSUMED.labels(self.consumer, source, Outcome.DEAD_LETTERED.value).inc()
        log.warning(
            "dead_lettered",
            reason=letter.reason,
            error=letter.error,
            topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
        )
        return Outcome.DEAD_LETTERED


def dead_letter_headers(delivery: Delivery, letter: DeadLetter, consumer: str) -> dict[str, str]:
    """The original headers plus where the record came from and why it could not be processed."""
    headers = {name: value.decode(errors="replace") for name, value in delivery.headers}
    headers.update(
        {
            "x-ipmg-consumer": consumer,
            "x-ipmg-reason": letter.reason,
            "x-ipmg-error": letter.error[:2000],
            "x-ipmg-original-topic": delivery.topic,
            "x-ipmg-original-partition": str(delivery.partition),
            "x-ipmg-original-offset": str(delivery.offset),
        }
    )
    return headers


def _logged_as(envelope: Envelope) -> contextlib.AbstractContextManager[None]:
    """What is logged while an event is handled carries the event's identity."""
    return structlog.contextvars.bound_contextvars(
        correlation_id=str(envelope.correlation_id),
        event_id=str(envelope.event_id),
        source=envelope.source,
        position=envelope.position,
    )


def _first_error(error: ValidationError) -> str:
    details = error.errors(include_url=False)
    if not details:
        return str(error)
    where = ".".join(str(part) for part in details[0]["loc"]) or "message"
    return f"{where}: {details[0]['msg']}"


__all__ = [
    "ConsumerRunner",
    "DeadLetter",
    "Delivery",
    "EventHandler",
    "Outcome",
    "Received",
    "Subscription",
    "dead_letter_headers",
]
