"""The audit watch in-process against real servers: an event the relay recorded as published
but that never reached the topic is reported as missing, once the watch has read to the end."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from ipmg_shared.audit_watch import AuditWatch
from ipmg_shared.chain import BreakKind
from ipmg_shared.settings import Settings
from ipmg_shared.store import EventStore
from ipmg_shared.topics import ensure_topics
from tests.support.sample_events import REGISTRY, SECRETARIAT, notes
from tests.support.waiting import wait_until

pytestmark = pytest.mark.infra


async def test_an_event_published_but_missing_from_the_topic_is_reported(
    kafka: Settings, service_name: str, service_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await ensure_topics(kafka, [service_name])
    store = EventStore(service_pool, service_name, REGISTRY)
    for i in range(6):
        await store.append(
            "note-a", None, notes(f"n{i}"), actor=SECRETARIAT, correlation_id=uuid4()
        )
    producer = AIOKafkaProducer(bootstrap_servers=kafka.kafka_bootstrap_servers)
    await producer.start()
    try:
        for event in await store.read_all():
            if event.position != 4:
                await producer.send_and_wait(
                    kafka.topics.events(service_name), event.to_bytes(), key=b"note-a"
                )
    finally:
        await producer.stop()
    await service_pool.execute(
        "INSERT INTO relay_progress (topic, published_position) VALUES ($1, 6)",
        kafka.topics.events(service_name),
    )
    watch = AuditWatch(
        kafka, tmp_path / "watch.sqlite3", store_interval_s=0.3, sources=[service_name]
    )
    follower = watch.followers[service_name]
    tasks = [
        asyncio.create_task(watch.follow_topics()),
        asyncio.create_task(watch.compare_with_stores()),
    ]
    try:
        await wait_until(lambda: follower.found is not None, timeout=30)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        watch.state.close()
    assert follower.found is not None
    assert follower.found.chain_break.kind is BreakKind.MISSING
    assert follower.found.chain_break.position == 4
    assert follower.head[0] == 3  # 5 and 6 wait for 4, never verified out of order
    assert watch.readiness()[service_name].startswith("BROKEN")
