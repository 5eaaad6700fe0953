"""Outbox relay to the real Kafka, and the effectively-once consumer runner behind it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY as METRICS

from ipmg_shared.consumer import ConsumerRunner, Delivery, Outcome, Subscription
from ipmg_shared.envelope import Envelope
from ipmg_shared.events import DomainEvent
from ipmg_shared.kafka_reader import read_topic
from ipmg_shared.relay import Relay
from ipmg_shared.runtime import dead_letter_sink, make_broker, subscribe
from ipmg_shared.settings import Settings
from ipmg_shared.store import EventStore
from tests.support.processes import IPMG, service_env
from tests.support.sample_events import REGISTRY, SECRETARIAT, NoteRecorded, notes
from tests.support.waiting import wait_until

pytestmark = pytest.mark.infra


@contextlib.asynccontextmanager
async def running_relay(settings: Settings, service_name: str) -> AsyncIterator[Relay]:
    relay = Relay(settings, settings.service_dsn(service_name), service_name)
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_relay_publishes_every_event_in_order_with_headers(
    kafka: Settings, postgres: Settings, service_name: str, store: EventStore
) -> None:
    for i in range(30):
        await store.append(
            f"note-{i % 4}", None, notes(f"n{i}"), actor=SECRETARIAT, correlation_id=uuid4()
        )
    async with running_relay(kafka, service_name) as relay:
        await wait_until(lambda: relay.published_position == 30)
        await store.append(
            "note-9", 0, notes("woken by notify"), actor=SECRETARIAT, correlation_id=uuid4()
        )
        await wait_until(lambda: relay.published_position == 31, timeout=5)

    records = [r async for r in read_topic(kafka, kafka.topics.events(service_name))]
    envelopes = [Envelope.from_bytes(r.value) for r in records]
    assert [e.position for e in envelopes] == list(range(1, 32))
    assert all(e.hash_is_valid for e in envelopes)
    first = records[0]
    assert first.key == envelopes[0].stream_id.encode()
    headers = dict(first.headers)
    assert headers["type"] == b"NoteRecorded"
    assert headers["source"] == service_name.encode()
    assert headers["event_id"] == str(envelopes[0].event_id).encode()


async def test_progress_set_back_by_an_operator_is_published_again_from_there(
    kafka: Settings, service_name: str, service_pool: asyncpg.Pool, store: EventStore
) -> None:
    """The relay reads what is recorded as published with each batch, not once at start."""
    for i in range(5):
        await store.append("note-a", i, notes(f"n{i}"), actor=SECRETARIAT, correlation_id=uuid4())
    async with running_relay(kafka, service_name) as relay:
        await wait_until(lambda: relay.published_position == 5)
        lag = METRICS.get_sample_value("ipmg_relay_lag_events", {"source": service_name})
        assert lag == 0
        await service_pool.execute("UPDATE relay_progress SET published_position = 2")
        await store.append("note-a", 5, notes("n5"), actor=SECRETARIAT, correlation_id=uuid4())
        await wait_until(lambda: relay.published_position == 6, timeout=5)

    records = [r async for r in read_topic(kafka, kafka.topics.events(service_name))]
    assert [Envelope.from_bytes(r.value).position for r in records] == [1, 2, 3, 4, 5, 3, 4, 5, 6]


class EffectRecorder:
    """A handler whose effect is a row per event, in the consumer's own transaction."""

    def __init__(self) -> None:
        self.calls = 0
        self.published: dict[tuple[str, int], bytes] = {}  # what each call was given

    async def __call__(
        self, connection: object, envelope: Envelope, event: DomainEvent, published: bytes
    ) -> None:
        assert isinstance(event, NoteRecorded)
        self.calls += 1
        self.published[(envelope.stream_id, envelope.stream_version)] = published
        if event.text == "explode":
            raise RuntimeError("handler bug")
        await connection.execute(  # type: ignore[attr-defined]
            "INSERT INTO effects (stream_id, stream_version, text) VALUES ($1, $2, $3)",
            envelope.stream_id,
            envelope.stream_version,
            event.text,
        )


async def make_effects_table(settings: Settings, service_name: str) -> None:
    admin = await asyncpg.connect(settings.admin_dsn(settings.service_database(service_name)))
    await admin.execute(
        "CREATE TABLE effects (stream_id text, stream_version int, text text, "
        "PRIMARY KEY (stream_id, stream_version))"
    )
    await admin.execute(
        f'GRANT SELECT, INSERT ON effects TO "{settings.service_role(service_name)}"'
    )
    await admin.close()


async def test_consumer_applies_each_event_once_and_dead_letters_poison(
    kafka: Settings, service_name: str, store: EventStore, service_pool: asyncpg.Pool
) -> None:
    await make_effects_table(kafka, service_name)
    for i in range(20):
        await store.append(
            f"note-{i % 3}", None, notes(f"n{i}"), actor=SECRETARIAT, correlation_id=uuid4()
        )
    topic = kafka.topics.events(service_name)
    recorder = EffectRecorder()
    subscription = Subscription(
        consumer=f"effects-{service_name}",
        sources={service_name: REGISTRY},
        handler=recorder,
        topic_names=kafka.topics,
        retry_backoff_s=0.01,
    )
    broker = make_broker(kafka, "test-consumer")
    runner = ConsumerRunner(subscription, service_pool, dead_letter_sink(broker, kafka.topics))
    subscribe(broker, runner, kafka)

    async def effects_are(expected: int) -> bool:
        return bool(await service_pool.fetchval("SELECT count(*) FROM effects") == expected)

    async with running_relay(kafka, service_name) as relay:
        await wait_until(lambda: relay.published_position == 20)
        # Poison on the event topic: raw bytes, and a well-formed event of an unknown type.
        producer = AIOKafkaProducer(bootstrap_servers=kafka.kafka_bootstrap_servers)
        await producer.start()
        await producer.send_and_wait(topic, b"\x00not json", key=b"poison")
        good = (await store.read_all(limit=1))[0].to_json()
        unknown = {**good, "type": "NoteShredded", "stream_id": "note-x"}
        await producer.send_and_wait(topic, json.dumps(unknown).encode(), key=b"note-x")
        forged = {**good, "source": "intruder", "stream_id": "note-y"}
        await producer.send_and_wait(topic, json.dumps(forged).encode(), key=b"note-y")
        wrong_schema = {"hello": "world"}
        await producer.send_and_wait(topic, json.dumps(wrong_schema).encode(), key=b"note-z")
        bad_payload = {**good, "stream_id": "note-w", "payload": {"text": 42}}
        await producer.send_and_wait(topic, json.dumps(bad_payload).encode(), key=b"note-w")
        # A duplicate of an event already delivered (as a relay restart would produce).
        await producer.send_and_wait(topic, json.dumps(good).encode(), key=b"note-0")
        await producer.stop()
        await store.append("note-7", 0, notes("explode"), actor=SECRETARIAT, correlation_id=uuid4())
        await store.append(
            "note-8", 0, notes("after the poison"), actor=SECRETARIAT, correlation_id=uuid4()
        )

        async with broker:
            await broker.start()
            await wait_until(lambda: effects_are(21), timeout=60)

    rows = await service_pool.fetch(
        "SELECT stream_id, stream_version FROM effects ORDER BY stream_id, stream_version"
    )
    by_stream: dict[str, list[int]] = {}
    for row in rows:
        by_stream.setdefault(row["stream_id"], []).append(row["stream_version"])
    assert all(v == list(range(1, len(v) + 1)) for v in by_stream.values())
    assert "note-7" not in by_stream  # the handler bug was dead-lettered, not applied
    assert by_stream["note-8"] == [1]
    # Each handler call was given its record's value byte for byte (the first copy of an
    # event on the topic is the relay's; the later duplicate is skipped).
    on_topic: dict[tuple[str, int], bytes] = {}
    async for record in read_topic(kafka, topic):
        with contextlib.suppress(ValueError):
            envelope = Envelope.from_bytes(record.value)
            on_topic.setdefault((envelope.stream_id, envelope.stream_version), record.value)
    applied = [(row["stream_id"], row["stream_version"]) for row in rows]
    assert {key: recorder.published[key] for key in applied} == {
        key: on_topic[key] for key in applied
    }

    letters = [r async for r in read_topic(kafka, kafka.topics.dead_letter)]
    reasons = sorted(
        dict(r.headers)["x-ipmg-reason"].decode()
        for r in letters
        if dict(r.headers).get("x-ipmg-consumer") == subscription.consumer.encode()
    )
    assert reasons == [
        "bad_payload",
        "forged_source",
        "handler_error",
        "undecodable",
        "undecodable",
        "unknown_type",
    ]
    errors = [dict(r.headers)["x-ipmg-error"].decode() for r in letters]
    assert any("payload" in error for error in errors)


async def test_a_first_event_handled_twice_at_once_is_applied_once(
    kafka: Settings, service_name: str, store: EventStore, service_pool: asyncpg.Pool
) -> None:
    """A stream's first event has no checkpoint row to lock: the same event taken at once by
    two consumers of one service (its topic's and the retry topic's, each with its own
    subscriber) must still be applied once."""
    admin = await asyncpg.connect(kafka.admin_dsn(kafka.service_database(service_name)))
    await admin.execute("CREATE TABLE effects (stream_id text, stream_version int)")  # no key
    await admin.execute(f'GRANT SELECT, INSERT ON effects TO "{kafka.service_role(service_name)}"')
    await admin.close()
    await store.append("note-1", 0, notes("first"), actor=SECRETARIAT, correlation_id=uuid4())
    envelope = (await store.read_all(limit=1))[0]
    both_inside = asyncio.Barrier(2)

    async def handler(connection: Any, envelope: Envelope, event: DomainEvent, _: bytes) -> None:
        await connection.execute(
            "INSERT INTO effects VALUES ($1, $2)", envelope.stream_id, envelope.stream_version
        )
        await both_inside.wait()  # both have read "no checkpoint yet" before either commits

    subscription = Subscription(
        consumer=f"twice-{service_name}",
        sources={service_name: REGISTRY},
        handler=handler,
        topic_names=kafka.topics,
    )

    async def never_dead_lettered(*_: object) -> None:
        raise AssertionError("nothing here is dead-lettered")

    runner = ConsumerRunner(subscription, service_pool, never_dead_lettered)
    delivery = Delivery(
        topic=kafka.topics.events(service_name),
        partition=0,
        offset=0,
        key=envelope.stream_id.encode(),
        value=envelope.to_bytes(),
        headers=tuple(envelope.kafka_headers()),
    )

    outcomes = await asyncio.wait_for(
        asyncio.gather(runner.process(delivery), runner.process(delivery)), 30
    )

    assert sorted(outcomes) == [Outcome.APPLIED, Outcome.DUPLICATE]
    assert await service_pool.fetchval("SELECT count(*) FROM effects") == 1
    checkpoint = await service_pool.fetchrow(
        "SELECT s.last_version, p.events_applied FROM consumer_streams s "
        "JOIN consumer_sources p USING (consumer) WHERE s.consumer = $1",
        subscription.consumer,
    )
    assert checkpoint is not None
    assert (checkpoint["last_version"], checkpoint["events_applied"]) == (1, 1)


async def test_dead_letters_are_listed_and_replayed_to_their_consumer_once_fixed(
    kafka: Settings, service_name: str, store: EventStore, service_pool: asyncpg.Pool
) -> None:
    await make_effects_table(kafka, service_name)
    recorder = EffectRecorder()
    broken = {"yes": True}

    async def sometimes_broken(
        connection: object, envelope: Envelope, event: DomainEvent, published: bytes
    ) -> None:
        if broken["yes"]:
            raise RuntimeError("a bug fixed by the next release")
        await recorder(connection, envelope, event, published)

    consumer = f"replay-{service_name}"
    subscription = Subscription(
        consumer=consumer,
        sources={service_name: REGISTRY},
        handler=sometimes_broken,
        topic_names=kafka.topics,
        retry_backoff_s=0.01,
    )
    broker = make_broker(kafka, "test-replay")
    subscribe(
        broker,
        ConsumerRunner(subscription, service_pool, dead_letter_sink(broker, kafka.topics)),
        kafka,
    )
    await store.append(
        "note-r", 0, notes("needs the fix"), actor=SECRETARIAT, correlation_id=uuid4()
    )
    env = service_env(kafka)
    async with running_relay(kafka, service_name), broker:
        await broker.start()

        async def listed() -> bool:
            done = await asyncio.to_thread(
                subprocess.run,
                [str(IPMG), "dlq", "list", "--consumer", consumer],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            return "1 dead-lettered message(s)" in done.stdout

        await wait_until(listed, timeout=60, interval=0.5)
        broken["yes"] = False
        replayed = await asyncio.to_thread(
            subprocess.run,
            [str(IPMG), "dlq", "replay", "--consumer", consumer],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert replayed.returncode == 0, replayed.stderr
        await wait_until(
            lambda: service_pool.fetchval("SELECT count(*) = 1 FROM effects"), timeout=60
        )
    nothing = await asyncio.to_thread(
        subprocess.run,
        [str(IPMG), "dlq", "replay", "--consumer", "nobody"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert nothing.returncode == 1
    assert nothing.stderr.strip() == "ipmg: error: no dead-lettered messages for consumer 'nobody'"


async def test_two_relays_one_leads_and_the_topic_stays_in_order(
    kafka: Settings, service_name: str, store: EventStore
) -> None:
    async with (
        running_relay(kafka, service_name) as first,
        running_relay(kafka, service_name) as second,
    ):
        await wait_until(lambda: first.is_leader or second.is_leader)
        for i in range(40):
            await store.append(
                f"note-{i % 5}", None, notes(f"n{i}"), actor=SECRETARIAT, correlation_id=uuid4()
            )
        leader = first if first.is_leader else second
        await wait_until(lambda: leader.published_position == 40)
        assert not (first.is_leader and second.is_leader)
    records = [r async for r in read_topic(kafka, kafka.topics.events(service_name))]
    assert [Envelope.from_bytes(r.value).position for r in records] == list(range(1, 41))
