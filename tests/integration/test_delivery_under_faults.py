"""Nothing is lost and nothing applies twice: Kafka down, and the relay killed mid-batch."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest

from ipmg_meetings.main import service as meetings_service
from ipmg_shared.consumer import ConsumerRunner, Subscription
from ipmg_shared.db import apply_migrations, create_pool, provision_service_database
from ipmg_shared.envelope import Envelope
from ipmg_shared.events import DomainEvent
from ipmg_shared.kafka_reader import read_topic
from ipmg_shared.relay import Relay
from ipmg_shared.runtime import dead_letter_sink, make_broker, subscribe
from ipmg_shared.settings import Settings
from ipmg_shared.store import EventStore
from ipmg_shared.topics import ensure_topics
from tests.support.processes import private_kafka, running_service
from tests.support.sample_events import REGISTRY, SECRETARIAT, NoteRecorded, notes
from tests.support.waiting import wait_until

pytestmark = pytest.mark.infra
EVENTS = 200


async def make_effects_table(settings: Settings, service: str) -> None:
    admin = await asyncpg.connect(settings.admin_dsn(settings.service_database(service)))
    await admin.execute(
        "CREATE TABLE IF NOT EXISTS effects (applied bigserial, stream_id text, "
        "stream_version int, text text, PRIMARY KEY (stream_id, stream_version))"
    )
    role = settings.service_role(service)
    await admin.execute(f'GRANT SELECT, INSERT ON effects TO "{role}"')
    await admin.execute(f'GRANT USAGE ON SEQUENCE effects_applied_seq TO "{role}"')
    await admin.close()


async def record_effect(
    connection: object, envelope: Envelope, event: DomainEvent, _: bytes
) -> None:
    assert isinstance(event, NoteRecorded)
    await connection.execute(  # type: ignore[attr-defined]
        "INSERT INTO effects (stream_id, stream_version, text) VALUES ($1, $2, $3)",
        envelope.stream_id,
        envelope.stream_version,
        event.text,
    )


@contextlib.asynccontextmanager
async def consuming(settings: Settings, source: str, pool: asyncpg.Pool) -> AsyncIterator[None]:
    subscription = Subscription(
        consumer=f"faults-{uuid4().hex[:6]}",
        sources={source: REGISTRY},
        handler=record_effect,
        topic_names=settings.topics,
    )
    broker = make_broker(settings, "faults-consumer")
    runner = ConsumerRunner(subscription, pool, dead_letter_sink(broker, settings.topics))
    subscribe(broker, runner, settings)
    async with broker:
        await broker.start()
        yield


async def assert_exactly_once_in_stream_order(pool: asyncpg.Pool, expected: int) -> None:
    rows = await pool.fetch("SELECT stream_id, stream_version FROM effects ORDER BY applied")
    assert len(rows) == expected
    seen: dict[str, int] = {}
    for row in rows:
        assert row["stream_version"] == seen.get(row["stream_id"], 0) + 1
        seen[row["stream_id"]] = row["stream_version"]


async def append_notes(store: EventStore, count: int) -> None:
    for i in range(count):
        await store.append(
            f"note-{i % 10}", None, notes(f"n{i}"), actor=SECRETARIAT, correlation_id=uuid4()
        )


async def test_kafka_down_events_wait_in_postgres_then_arrive_once_in_order(
    postgres: Settings, service_name: str, service_pool: asyncpg.Pool
) -> None:
    await make_effects_table(postgres, service_name)
    store = EventStore(service_pool, service_name, REGISTRY)
    with private_kafka() as broker_process:
        settings = postgres.model_copy(
            update={
                "kafka_bootstrap_servers": broker_process.bootstrap,
                "kafka_send_timeout_s": 5.0,
            }
        )
        await ensure_topics(settings, [service_name])
        relay = Relay(settings, settings.service_dsn(service_name), service_name)
        relay_task = asyncio.create_task(relay.run())
        try:
            async with consuming(settings, service_name, service_pool):
                await append_notes(store, 10)
                await wait_until(lambda: service_pool.fetchval("SELECT count(*) = 10 FROM effects"))
                await asyncio.to_thread(broker_process.stop)
                await append_notes(store, EVENTS - 10)
                await asyncio.sleep(2)
                assert relay.published_position == 10  # waiting in PostgreSQL
                await asyncio.to_thread(broker_process.start)
                await wait_until(
                    lambda: service_pool.fetchval(f"SELECT count(*) >= {EVENTS} FROM effects"),
                    timeout=120,
                )
                await asyncio.sleep(1)  # anything extra would show up now
        finally:
            relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay_task
    await assert_exactly_once_in_stream_order(service_pool, EVENTS)


async def test_relay_killed_mid_batch_republishes_and_consumers_apply_once(
    kafka: Settings, tmp_path: Path
) -> None:
    # Databases and topics of this test alone (still under the session's prefixes).
    kafka = kafka.model_copy(
        update={
            "database_prefix": f"{kafka.database_prefix}relaykill_",
            "topic_prefix": f"{kafka.topic_prefix}relaykill.",
        }
    )
    await ensure_topics(kafka)
    await provision_service_database(kafka, "meetings")
    await apply_migrations(
        kafka, "meetings", meetings_service.migrations(), meetings_service.append_only_tables
    )
    await make_effects_table(kafka, "meetings")
    pool = await create_pool(kafka.service_dsn("meetings"), kafka, max_size=4)
    try:
        store = EventStore(pool, "meetings", REGISTRY)
        await append_notes(store, EVENTS)

        async def published() -> int:
            value = await pool.fetchval(
                "SELECT coalesce(max(published_position), 0) FROM relay_progress"
            )
            return int(value or 0)

        async def published_between(low: int, high: int) -> bool:
            return low <= await published() <= high

        with running_service("meetings", kafka, tmp_path, IPMG_RELAY_BATCH_SIZE="5") as service:
            await wait_until(lambda: published_between(1, EVENTS - 1), timeout=60, interval=0.01)
            service.stop(signal.SIGKILL)
        killed_at = await published()
        assert 0 < killed_at < EVENTS
        with running_service("meetings", kafka, tmp_path):
            await wait_until(lambda: published_between(EVENTS, EVENTS), timeout=60)
        async with consuming(kafka, "meetings", pool):
            await wait_until(
                lambda: pool.fetchval(f"SELECT count(*) >= {EVENTS} FROM effects"), timeout=120
            )
            await asyncio.sleep(1)
        await assert_exactly_once_in_stream_order(pool, EVENTS)
        on_topic = [r async for r in read_topic(kafka, kafka.topics.events("meetings"))]
        positions = {Envelope.from_bytes(r.value).position for r in on_topic}
        assert positions == set(range(1, EVENTS + 1))
    finally:
        await pool.close()
