"""``ipmg_events_appended_total`` counts every append in the store, whoever makes it, so at
rest it equals ``ipmg_events_published_total``."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from uuid import uuid4

import pytest
from prometheus_client import REGISTRY as METRICS

from ipmg_shared.audit import write_checkpoint
from ipmg_shared.checkpoints import Keyring
from ipmg_shared.relay import Relay
from ipmg_shared.settings import Settings
from ipmg_shared.store import CommandId, EventStore
from tests.support.sample_events import SECRETARIAT, notes
from tests.support.waiting import wait_until

pytestmark = pytest.mark.infra


def counted(name: str, source: str) -> float:
    return METRICS.get_sample_value(name, {"source": source}) or 0.0


async def test_appends_of_every_kind_are_counted_once_and_all_published(
    kafka: Settings, service_name: str, store: EventStore, tmp_path: Path
) -> None:
    # As a consumer or the notifications service appends: straight to the store.
    for i in range(4):
        await store.append(
            f"note-{i}", None, notes(f"n{i}"), actor=SECRETARIAT, correlation_id=uuid4()
        )
    # A command retried with its idempotency key appends nothing the second time.
    command = CommandId.of("key-1", {"note": "once"})
    for _ in range(2):
        await store.append(
            "note-x",
            None,
            notes("once"),
            actor=SECRETARIAT,
            correlation_id=uuid4(),
            command=command,
        )
    # As `ipmg audit checkpoint` does.
    keyring = Keyring(tmp_path / "keys")
    keyring.generate(service_name)
    await write_checkpoint(store, keyring)

    assert counted("ipmg_events_appended_total", service_name) == 6

    relay = Relay(kafka, kafka.service_dsn(service_name), service_name)
    task = asyncio.create_task(relay.run())
    try:
        await wait_until(lambda: relay.published_position == 6)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert counted("ipmg_events_published_total", service_name) == 6
