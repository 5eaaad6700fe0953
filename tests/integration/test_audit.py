"""Audit against the real PostgreSQL and Kafka: stores, topics, checkpoints and bundles."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from ipmg_shared.audit import audit_source, write_checkpoint
from ipmg_shared.bundles import export_bundle, verify_bundle
from ipmg_shared.chain import BreakKind
from ipmg_shared.checkpoints import Keyring
from ipmg_shared.envelope import hash_event_fields
from ipmg_shared.key_list import load_key_list, publish
from ipmg_shared.relay import Relay
from ipmg_shared.settings import Settings
from ipmg_shared.store import EventStore, json_from_row
from ipmg_shared.topics import ensure_topics
from tests.support.processes import IPMG, service_env
from tests.support.sample_events import REGISTRY, SECRETARIAT, notes
from tests.support.waiting import wait_until

pytestmark = pytest.mark.infra


@pytest.fixture
async def keyring(tmp_path: Path, service_name: str) -> Keyring:
    keys = Keyring(tmp_path / "keys")
    keys.generate(service_name)
    return keys


@pytest.fixture
async def history(
    kafka: Settings, service_name: str, service_pool: asyncpg.Pool, keyring: Keyring
) -> EventStore:
    """15 events and a signed checkpoint after the 10th, all published to the topic."""
    await ensure_topics(kafka, [service_name])
    store = EventStore(service_pool, service_name, REGISTRY)
    for i in range(10):
        await store.append(
            f"note-{i % 3}", None, notes(f"n{i}"), actor=SECRETARIAT, correlation_id=uuid4()
        )
    await write_checkpoint(store, keyring)  # position 11 signs position 10
    for i in range(10, 15):
        await store.append(
            f"note-{i % 3}", None, notes(f"n{i}"), actor=SECRETARIAT, correlation_id=uuid4()
        )
    relay = Relay(kafka, kafka.service_dsn(service_name), service_name)
    task = asyncio.create_task(relay.run())
    await wait_until(lambda: relay.published_position == 16)
    task.cancel()
    return store


async def test_an_untouched_record_verifies_in_store_and_topic(
    kafka: Settings, service_name: str, history: EventStore, keyring: Keyring
) -> None:
    audit = await audit_source(kafka, service_name, keyring.public_keys())
    assert audit.ok, audit.first_problem
    assert audit.store.events == 16
    assert audit.topic is not None
    assert audit.topic.events == 16
    assert audit.checkpoints == 1


async def rewrite(admin: asyncpg.Connection, from_position: int, text: str) -> None:
    """A consistent forgery: change one payload and recompute every later hash and link."""
    rows = await admin.fetch(
        "SELECT * FROM events WHERE position >= $1 ORDER BY position", from_position - 1
    )
    events = [json_from_row(row) for row in rows]
    events[1]["payload"] = {**events[1]["payload"], "text": text}
    for previous, event in itertools.pairwise(events):
        event["prev_hash"] = previous["hash"]
        event["hash"] = hash_event_fields(event)
    async with admin.transaction():
        await admin.execute("ALTER TABLE events DISABLE TRIGGER USER")  # as the owner may
        for event in events[1:]:
            await admin.execute(
                "UPDATE events SET payload = $2, prev_hash = $3, hash = $4 WHERE position = $1",
                event["position"],
                event["payload"],
                event["prev_hash"],
                event["hash"],
            )
        await admin.execute("ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_only")


async def test_a_consistent_rewrite_is_caught_by_the_signed_checkpoint_and_the_topic(
    kafka: Settings,
    service_name: str,
    history: EventStore,
    keyring: Keyring,
    admin_connection: asyncpg.Connection,
) -> None:
    await rewrite(admin_connection, 3, "forged")
    assert (await history.verify_chain()).ok  # the chain alone cannot tell
    store_only = await audit_source(kafka, service_name, keyring.public_keys(), with_topic=False)
    assert store_only.first_problem is not None
    assert store_only.first_problem.kind is BreakKind.CHECKPOINT
    assert store_only.first_problem.position == 10
    both = await audit_source(kafka, service_name, keyring.public_keys())
    assert both.first_problem is not None
    assert (both.first_problem.kind, both.first_problem.position) == (BreakKind.DISAGREE, 3)


async def test_a_checkpoint_signed_with_an_unknown_key_is_refused(
    kafka: Settings, service_name: str, history: EventStore, tmp_path: Path
) -> None:
    stranger = Keyring(tmp_path / "other")
    stranger.generate(service_name)
    audit = await audit_source(kafka, service_name, stranger.public_keys(), with_topic=False)
    assert audit.first_problem is not None
    assert audit.first_problem.kind is BreakKind.CHECKPOINT


async def produce(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"note-x")
    finally:
        await producer.stop()


async def test_an_event_on_the_topic_that_the_store_lacks_is_caught(
    kafka: Settings, service_name: str, history: EventStore, keyring: Keyring
) -> None:
    last = (await history.read_all(after_position=15))[0].to_json()
    extra = {**last, "position": 17, "event_id": str(uuid4()), "prev_hash": last["hash"]}
    extra["hash"] = hash_event_fields(extra)
    await produce(kafka, kafka.topics.events(service_name), [json.dumps(extra).encode()])
    audit = await audit_source(kafka, service_name, keyring.public_keys())
    assert audit.first_problem is not None
    assert (audit.first_problem.kind, audit.first_problem.position) == (BreakKind.EXTRA, 17)


async def test_a_topic_missing_an_event_is_caught(
    kafka: Settings, service_name: str, service_pool: asyncpg.Pool, keyring: Keyring
) -> None:
    """The topic is written by hand without event 4; the relay's record says all went out."""
    await ensure_topics(kafka, [service_name])
    store = EventStore(service_pool, service_name, REGISTRY)
    for i in range(6):
        await store.append(
            "note-a", None, notes(f"n{i}"), actor=SECRETARIAT, correlation_id=uuid4()
        )
    events = [e.to_bytes() for e in await store.read_all() if e.position != 4]
    await produce(kafka, kafka.topics.events(service_name), events)
    await service_pool.execute(
        "INSERT INTO relay_progress (topic, published_position) VALUES ($1, 6)",
        kafka.topics.events(service_name),
    )
    audit = await audit_source(kafka, service_name, keyring.public_keys())
    assert audit.first_problem is not None
    assert (audit.first_problem.kind, audit.first_problem.position) == (BreakKind.MISSING, 4)


def run_ipmg(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(IPMG), *args],
        env={**service_env(settings), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_bundle_round_trip_and_every_way_to_spoil_it(
    kafka: Settings, service_name: str, history: EventStore, keyring: Keyring, tmp_path: Path
) -> None:
    publish(keyring)
    trusted = load_key_list(keyring.folder)
    bundle = tmp_path / "bundle"
    manifest = await export_bundle(kafka, [service_name], datetime.now(UTC), bundle, keyring)
    assert manifest["sources"][service_name]["events"] == 16
    assert all(audit.ok for audit in verify_bundle(bundle, trusted))

    # From the command line, on this machine's files alone.
    keys = ("--keys", str(keyring.folder))
    done = await asyncio.to_thread(run_ipmg, kafka, "audit", "verify", str(bundle), *keys)
    assert done.returncode == 0, done.stderr

    events_file = bundle / "events" / f"{service_name}.jsonl"
    lines = events_file.read_text().splitlines(keepends=True)

    truncated = shutil.copytree(bundle, tmp_path / "truncated")
    (truncated / "events" / f"{service_name}.jsonl").write_text("".join(lines[:-3]))
    [audit] = verify_bundle(truncated, trusted)
    assert not audit.ok

    edited = shutil.copytree(bundle, tmp_path / "edited")
    (edited / "events" / f"{service_name}.jsonl").write_text(
        "".join(lines).replace('"text":"n5"', '"text":"n6"')
    )
    [audit] = verify_bundle(edited, trusted)
    assert audit.first_problem is not None
    assert audit.first_problem.kind is BreakKind.CHANGED

    stranger = Keyring(tmp_path / "stranger")
    stranger.generate(service_name)
    publish(stranger)
    [audit] = verify_bundle(bundle, load_key_list(stranger.folder))
    assert audit.first_problem is not None
    assert audit.first_problem.kind is BreakKind.CHECKPOINT

    missing = shutil.copytree(bundle, tmp_path / "missing")
    (missing / "events" / f"{service_name}.jsonl").unlink()
    for spoiled in (truncated, edited, missing, tmp_path / "nowhere"):
        done = await asyncio.to_thread(run_ipmg, kafka, "audit", "verify", str(spoiled), *keys)
        assert done.returncode == 1, spoiled
        assert done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("ipmg: error: ")
