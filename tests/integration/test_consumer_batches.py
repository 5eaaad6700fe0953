"""Records that wait together are applied together: one transaction, each checked as if alone."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import anyio.to_thread
import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaBroker

from ipmg_shared.consumer import ConsumerRunner, DeadLetter, Delivery, Outcome, Subscription
from ipmg_shared.envelope import Envelope
from ipmg_shared.events import DomainEvent
from ipmg_shared.relay import Relay
from ipmg_shared.runtime import dead_letter_sink, make_broker, subscribe
from ipmg_shared.settings import Settings
from ipmg_shared.store import EventStore
from tests.integration.test_relay_and_consumer import running_relay
from tests.support.sample_events import REGISTRY, SECRETARIAT, NoteRecorded, notes
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from ipmg_shared.db import DbConnection

pytestmark = pytest.mark.infra


class TransactionRecorder:
    """A row per event with the id of the transaction that wrote it; some texts misbehave."""

    def __init__(self) -> None:
        self.faults_left = {"flaky": 1}

    async def __call__(
        self, connection: object, envelope: Envelope, event: DomainEvent, _: bytes
    ) -> None:
        assert isinstance(event, NoteRecorded)
        if event.text == "explode":
            raise RuntimeError("handler bug")
        if self.faults_left.get(event.text, 0) > 0:
            self.faults_left[event.text] -= 1
            raise asyncpg.SerializationError("could not serialize access")
        await connection.execute(  # type: ignore[attr-defined]
            "INSERT INTO effects (stream_id, stream_version, text) VALUES ($1, $2, $3)",
            envelope.stream_id,
            envelope.stream_version,
            event.text,
        )


class DeadLetters:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    async def __call__(self, delivery: Delivery, letter: DeadLetter, consumer: str) -> None:
        self.reasons.append(letter.reason)


@pytest.fixture
async def effects(kafka: Settings, service_name: str) -> None:
    admin = await asyncpg.connect(kafka.admin_dsn(kafka.service_database(service_name)))
    await admin.execute(
        "CREATE TABLE effects (stream_id text, stream_version int, text text, "
        "txid bigint NOT NULL DEFAULT txid_current(), PRIMARY KEY (stream_id, stream_version))"
    )
    await admin.execute(f'GRANT SELECT, INSERT ON effects TO "{kafka.service_role(service_name)}"')
    await admin.close()


def runner_of(
    kafka: Settings, service_name: str, pool: asyncpg.Pool, dead_letters: DeadLetters
) -> ConsumerRunner:
    subscription = Subscription(
        consumer=f"batches-{service_name}",
        sources={service_name: REGISTRY},
        handler=TransactionRecorder(),
        topic_names=kafka.topics,
        retry_backoff_s=0.01,
    )
    return ConsumerRunner(subscription, pool, dead_letters)


def subscribed_broker(
    kafka: Settings,
    service_name: str,
    pool: asyncpg.Pool,
    consumer: str,
    recorder: TransactionRecorder,
    *,
    gather_ms: int = 0,
) -> tuple[KafkaBroker, ConsumerRunner]:
    """A broker whose subscriber feeds the runner of consumer ``consumer``, as a service's."""
    subscription = Subscription(
        consumer=f"{consumer}-{service_name}",
        sources={service_name: REGISTRY},
        handler=recorder,
        topic_names=kafka.topics,
        gather_ms=gather_ms,
    )
    broker = make_broker(kafka, f"test-{consumer}")
    runner = ConsumerRunner(subscription, pool, dead_letter_sink(broker, kafka.topics))
    subscribe(broker, runner, kafka)
    return broker, runner


async def deliveries_of(
    kafka: Settings, service_name: str, store: EventStore, texts_by_stream: dict[str, list[str]]
) -> list[Delivery]:
    for stream_id, texts in texts_by_stream.items():
        await store.append(stream_id, 0, notes(*texts), actor=SECRETARIAT, correlation_id=uuid4())
    topic = kafka.topics.events(service_name)
    return [
        Delivery(topic, 0, offset, envelope.stream_id.encode(), envelope.to_bytes())
        for offset, envelope in enumerate(await store.read_all(limit=1000))
    ]


async def transactions_of(pool: asyncpg.Pool) -> dict[str, list[int]]:
    rows = await pool.fetch("SELECT stream_id, stream_version, txid FROM effects ORDER BY txid")
    applied: dict[str, list[int]] = {}
    for row in rows:
        applied.setdefault(row["stream_id"], []).append(row["stream_version"])
    return applied


async def distinct_transactions(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(DISTINCT txid) FROM effects"))


@pytest.mark.usefixtures("effects")
async def test_records_waiting_together_are_applied_in_one_transaction_each_checked_alone(
    kafka: Settings, service_name: str, store: EventStore, service_pool: asyncpg.Pool
) -> None:
    dead_letters = DeadLetters()
    runner = runner_of(kafka, service_name, service_pool, dead_letters)
    deliveries = await deliveries_of(
        kafka, service_name, store, {"note-a": ["a1", "a2", "a3"], "note-b": ["b1", "b2"]}
    )
    undecodable = Delivery(deliveries[0].topic, 0, 99, b"x", b"\x00not json")
    # The second delivery again (a redelivered copy) and a poison record, among the rest.
    batch = [*deliveries[:3], deliveries[1], undecodable, *deliveries[3:]]

    outcomes = await runner.process_batch(batch)

    applied, duplicate, dead = Outcome.APPLIED, Outcome.DUPLICATE, Outcome.DEAD_LETTERED
    assert outcomes == [applied, applied, applied, duplicate, dead, applied, applied]
    assert await transactions_of(service_pool) == {"note-a": [1, 2, 3], "note-b": [1, 2]}
    assert await distinct_transactions(service_pool) == 1
    assert dead_letters.reasons == ["undecodable"]
    source = await service_pool.fetchrow(
        "SELECT last_position, events_applied FROM consumer_sources WHERE consumer = $1",
        runner.consumer,
    )
    assert source is not None
    assert (source["last_position"], source["events_applied"]) == (5, 5)


@pytest.mark.usefixtures("effects")
async def test_a_transaction_starts_with_the_subscriptions_own_statement_once_per_batch(
    kafka: Settings, service_name: str, store: EventStore, service_pool: asyncpg.Pool
) -> None:
    started_in: list[int] = []

    async def note_the_transaction(connection: DbConnection) -> None:
        started_in.append(await connection.fetchval("SELECT txid_current()"))

    runner = runner_of(kafka, service_name, service_pool, DeadLetters())
    runner.subscription.on_transaction_start = note_the_transaction
    deliveries = await deliveries_of(
        kafka, service_name, store, {"note-a": ["a1", "a2"], "note-b": ["b1"]}
    )

    assert await runner.process_batch(deliveries) == [Outcome.APPLIED] * 3
    assert await runner.process_batch(deliveries[:1]) == [Outcome.DUPLICATE]

    applied_in = await service_pool.fetchval("SELECT min(txid) FROM effects")
    assert started_in[0] == applied_in
    assert len(started_in) == 2  # once for the batch of three, once for the copy alone


@pytest.mark.usefixtures("effects")
async def test_a_bad_record_in_a_batch_fails_only_itself(
    kafka: Settings, service_name: str, store: EventStore, service_pool: asyncpg.Pool
) -> None:
    dead_letters = DeadLetters()
    runner = runner_of(kafka, service_name, service_pool, dead_letters)
    deliveries = await deliveries_of(
        kafka,
        service_name,
        store,
        {"note-a": ["a1", "a2"], "note-b": ["b1", "b2", "b3"], "note-c": ["explode"]},
    )
    without_b2 = [d for d in deliveries if d.offset != 3]  # note-b skips from 1 to 3: a gap

    outcomes = await runner.process_batch(without_b2)

    applied, dead = Outcome.APPLIED, Outcome.DEAD_LETTERED
    assert outcomes == [applied, applied, applied, dead, dead]
    assert await transactions_of(service_pool) == {"note-a": [1, 2], "note-b": [1]}
    assert sorted(dead_letters.reasons) == ["handler_error", "stream_gap"]


@pytest.mark.usefixtures("effects")
async def test_a_database_fault_in_a_batch_applies_none_of_it_and_asks_for_all_again(
    kafka: Settings, service_name: str, store: EventStore, service_pool: asyncpg.Pool
) -> None:
    dead_letters = DeadLetters()
    runner = runner_of(kafka, service_name, service_pool, dead_letters)
    deliveries = await deliveries_of(
        kafka, service_name, store, {"note-a": ["a1", "a2", "flaky", "a4"]}
    )

    assert await runner.process_batch(deliveries) == [Outcome.RETRY_LATER]
    assert await transactions_of(service_pool) == {}

    assert await runner.process_batch(deliveries) == [Outcome.APPLIED] * 4
    assert await transactions_of(service_pool) == {"note-a": [1, 2, 3, 4]}
    assert dead_letters.reasons == []


@pytest.mark.usefixtures("effects")
async def test_a_backlog_through_kafka_is_applied_in_batches_once_each_after_a_fault(
    kafka: Settings, service_name: str, store: EventStore, service_pool: asyncpg.Pool
) -> None:
    """Published before the consumer starts, the records arrive fetched together; a database
    fault in the middle takes the consumer back to the first record it had not handled."""
    texts = {f"note-{s}": [f"{s}{v}" for v in range(1, 21)] for s in "abc"}
    texts["note-b"][9] = "flaky"  # its first attempt fails as if PostgreSQL had restarted
    for stream_id, stream_texts in texts.items():
        await store.append(
            stream_id, 0, notes(*stream_texts), actor=SECRETARIAT, correlation_id=uuid4()
        )
    recorder = TransactionRecorder()
    broker, _ = subscribed_broker(kafka, service_name, service_pool, "backlog", recorder)

    async with running_relay(kafka, service_name) as relay:
        await wait_until(lambda: relay.published_position == 60, timeout=30)
        async with broker:
            await broker.start()
            await wait_until(
                lambda: service_pool.fetchval("SELECT count(*) = 60 FROM effects"), timeout=60
            )

    assert recorder.faults_left == {"flaky": 0}
    assert await transactions_of(service_pool) == {s: list(range(1, 21)) for s in texts}
    # Fetched together, applied together: far fewer transactions than records.
    assert await distinct_transactions(service_pool) < 30


@pytest.mark.usefixtures("effects")
async def test_an_idle_consumer_commits_the_offsets_of_its_last_records(
    kafka: Settings, service_name: str, store: EventStore, service_pool: asyncpg.Pool
) -> None:
    """Records that came after the last ack are committed once none follow them, so Kafka's
    own lag tools do not show an idle consumer behind."""
    broker, runner = subscribed_broker(
        kafka, service_name, service_pool, "idle", TransactionRecorder()
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.kafka_bootstrap_servers)
    await admin.start()

    async def committed() -> int:
        offsets = await admin.list_consumer_group_offsets(kafka.topics.group(runner.consumer))
        return sum(meta.offset for meta in offsets.values() if meta.offset > 0)

    try:
        async with running_relay(kafka, service_name), broker:
            await broker.start()
            await store.append("note-a", 0, notes("a1"), actor=SECRETARIAT, correlation_id=uuid4())
            # The first record is acked at once (no commit before it): its offset is committed.
            await wait_until(lambda: committed_is(committed, 1), timeout=30)
            for version, text in enumerate(("a2", "a3", "a4"), start=1):
                await store.append(
                    "note-a", version, notes(text), actor=SECRETARIAT, correlation_id=uuid4()
                )
            await wait_until(
                lambda: service_pool.fetchval("SELECT count(*) = 4 FROM effects"), timeout=30
            )
            # Within the ack's interval of the first, so not acked: committed once idle.
            await wait_until(lambda: committed_is(committed, 4), timeout=10)
    finally:
        await admin.close()


async def committed_is(committed: Callable[[], Awaitable[int]], offsets: int) -> bool:
    return await committed() == offsets


@pytest.mark.usefixtures("effects")
async def test_records_are_handled_on_the_event_loop_with_no_thread_per_message(
    kafka: Settings,
    service_name: str,
    store: EventStore,
    service_pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FastStream's dependency injection would resolve the handler's message in a worker
    thread, a hop there and back for every message; the services' broker does without it."""
    hops = 0
    run_sync = anyio.to_thread.run_sync

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return await run_sync(*args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    broker, _ = subscribed_broker(
        kafka, service_name, service_pool, "threads", TransactionRecorder()
    )

    async def applied(count: int) -> bool:
        return bool(await service_pool.fetchval("SELECT count(*) = $1 FROM effects", count))

    async with running_relay(kafka, service_name), broker:
        await broker.start()
        # One at a time: each record is a message of its own, not one taken with another.
        for version, text in enumerate(("a1", "a2", "a3")):
            await store.append(
                "note-a", version, notes(text), actor=SECRETARIAT, correlation_id=uuid4()
            )
            await wait_until(functools.partial(applied, version + 1), timeout=30)

    assert await transactions_of(service_pool) == {"note-a": [1, 2, 3]}
    assert hops == 0


@pytest.mark.usefixtures("effects")
@pytest.mark.parametrize(("gather_ms", "fewest", "most"), [(0, 4, 5), (500, 1, 2)])
async def test_a_gathering_consumer_applies_records_that_came_apart_together(
    kafka: Settings,
    service_name: str,
    store: EventStore,
    service_pool: asyncpg.Pool,
    gather_ms: int,
    fewest: int,
    most: int,
) -> None:
    """Five events published 60 ms apart reach an eager consumer one by one; a consumer that
    gathers for 500 ms (the broker holds its fetch) applies them together, each once."""
    broker, _ = subscribed_broker(
        kafka, service_name, service_pool, "gather", TransactionRecorder(), gather_ms=gather_ms
    )
    async with running_relay(kafka, service_name) as relay, broker:
        await broker.start()
        for version, text in enumerate(("a1", "a2", "a3", "a4", "a5")):
            await store.append(
                "note-a", version, notes(text), actor=SECRETARIAT, correlation_id=uuid4()
            )
            # Published before the next is appended: the relay does not send them together.
            await wait_until(functools.partial(published_up_to, relay, version + 1), timeout=30)
            await asyncio.sleep(0.06)
        await wait_until(
            lambda: service_pool.fetchval("SELECT count(*) = 5 FROM effects"), timeout=30
        )

    assert await transactions_of(service_pool) == {"note-a": [1, 2, 3, 4, 5]}
    # Published within about 0.3 s: a fetch held for 500 ms takes them in one or two.
    assert fewest <= await distinct_transactions(service_pool) <= most


def published_up_to(relay: Relay, position: int) -> bool:
    return relay.published_position == position
