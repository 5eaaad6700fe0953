"""What the relays, a consumer's dead-lettering and `ipmg dlq replay` put on the real Kafka
matches the AsyncAPI document: every record is exactly one message of its channel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from ipmg_contracts import meetings, notifications, resolutions
from ipmg_shared.actors import Actor, Role, Unit
from ipmg_shared.asyncapi import asyncapi_document
from ipmg_shared.audit import write_checkpoint
from ipmg_shared.checkpoints import SYSTEM_EVENTS, Keyring
from ipmg_shared.consumer import DeadLetter, Delivery
from ipmg_shared.db import create_pool
from ipmg_shared.dlq import dead_letters, replay
from ipmg_shared.events import EventRegistry
from ipmg_shared.kafka_reader import read_topic
from ipmg_shared.relay import Relay
from ipmg_shared.runtime import dead_letter_sink, make_broker
from ipmg_shared.settings import Settings
from ipmg_shared.store import EventStore, NewEvent
from ipmg_shared.topics import ensure_topics
from tests.support.contract_strategies import examples_of
from tests.support.databases import fresh_service_database
from tests.support.waiting import wait_until
from tests.support.wire_contract import WireContract, WireRecord

pytestmark = pytest.mark.infra

SOURCES: dict[str, EventRegistry] = {
    "meetings": meetings.REGISTRY,
    "resolutions": resolutions.REGISTRY,
    "notifications": notifications.REGISTRY,
}
SECRETARIAT = Actor(subject="staff@ncsw.gov.pk", unit=Unit.NCSW, role=Role.SECRETARIAT)
EXAMPLES_PER_TYPE = 3


@pytest.fixture
async def wire(kafka: Settings, postgres: Settings) -> Settings:
    """Topics and databases named after the real sources, under a prefix of their own."""
    settings = kafka.model_copy(
        update={
            "database_prefix": f"{kafka.database_prefix}wire{uuid4().hex[:6]}_",
            "topic_prefix": f"{kafka.topic_prefix}wire{uuid4().hex[:6]}.",
        }
    )
    await ensure_topics(settings)
    return settings


@contextlib.asynccontextmanager
async def relaying(settings: Settings, source: str) -> AsyncIterator[Relay]:
    relay = Relay(settings, settings.service_dsn(source), source)
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def records_of(settings: Settings, topic: str) -> list[WireRecord]:
    return [
        WireRecord(topic, record.key, record.value or b"", tuple(record.headers or ()))
        async for record in read_topic(settings, topic)
    ]


async def publish_every_event_type(settings: Settings, source: str, keyring: Keyring) -> int:
    """Examples of every event type of ``source`` and a signed checkpoint, through its relay."""
    await fresh_service_database(settings, source)
    pool = await create_pool(settings.service_dsn(source), settings, max_size=2)
    try:
        store = EventStore(pool, source, SOURCES[source].merge(SYSTEM_EVENTS))
        for event_class in SOURCES[source].event_types.values():
            for example in examples_of(event_class, EXAMPLES_PER_TYPE):
                await store.append(
                    f"{event_class.event_type}-{uuid4()}",
                    None,
                    [NewEvent(example, occurred_at=datetime.now(UTC))],
                    actor=SECRETARIAT,
                    correlation_id=uuid4(),
                )
        keyring.generate(source)
        await write_checkpoint(store, keyring)
        head, _ = await store.head()
        async with relaying(settings, source) as relay:
            await wait_until(lambda: relay.published_position == head, timeout=30)
        return head
    finally:
        await pool.close()


async def test_every_record_on_every_topic_is_one_message_of_its_channel(
    wire: Settings, tmp_path: Path
) -> None:
    contract = WireContract(
        asyncapi_document(
            {source: registry.merge(SYSTEM_EVENTS) for source, registry in SOURCES.items()},
            wire.topics,
        )
    )
    keyring = Keyring(tmp_path / "keys")
    published: list[WireRecord] = []
    for source in SOURCES:
        head = await publish_every_event_type(wire, source, keyring)
        records = await records_of(wire, wire.topics.events(source))
        assert len(records) == head
        published += records

    # A record a consumer cannot process goes to the dead-letter topic, then back to it.
    broker = make_broker(wire, "ipmg-wire-test")
    await broker.start()
    try:
        original = published[0]
        await dead_letter_sink(broker, wire.topics)(
            Delivery(original.topic, 0, 0, original.key, original.value, original.headers),
            DeadLetter("stream_gap", "stream x: expected version 1, got 2"),
            "reporting",
        )
    finally:
        await broker.stop()
    await replay(wire, await dead_letters(wire))
    kept = await records_of(wire, wire.topics.dead_letter)
    retried = await records_of(wire, wire.topics.retry("reporting"))
    assert len(kept) == len(retried) == 1

    unmatched: dict[str, list[str]] = {}
    for record in [*published, *kept, *retried]:
        found = contract.matches(record)
        if len(found) != 1:
            unmatched[f"{record.topic} {dict(record.headers).get('type')!r}"] = found
    assert not unmatched, unmatched
    types = {dict(record.headers)["type"].decode() for record in published}
    assert types == {
        "ChainCheckpointSigned",
        *(t for registry in SOURCES.values() for t in registry.event_types),
    }

    # And a record that breaks its channel's contract matches nothing.
    checkpoint = next(r for r in published if dict(r.headers)["type"] == b"ChainCheckpointSigned")
    moved = WireRecord(wire.topics.events("notifications"), *_rest(checkpoint))
    assert contract.matches(moved) == []


def _rest(record: WireRecord) -> tuple[bytes | None, bytes, tuple[tuple[str, bytes], ...]]:
    return record.key, record.value, record.headers
