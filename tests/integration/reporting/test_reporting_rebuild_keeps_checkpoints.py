"""A rebuild keeps every stream the live copy tracks, signed checkpoints and notifications
included: it equals the live copy row for row, and the next checkpoint applies cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipmg_reporting.rebuild import rebuild_projection
from ipmg_shared.audit import write_checkpoint
from ipmg_shared.checkpoints import Keyring
from ipmg_shared.kafka_reader import read_topic
from ipmg_shared.settings import Settings
from tests.integration.reporting.system import (
    isolated,
    migrate_reporting,
    projection_rows,
    running_reporting,
    wait_applied,
    write_side,
)
from tests.support.reporting import row_differences
from tests.unit.reporting.history import HistoryWriter, with_notifications

pytestmark = pytest.mark.infra


async def test_a_checkpoint_after_a_rebuild_applies_without_a_dead_letter(
    postgres: Settings, kafka: Settings, tmp_path: Path
) -> None:
    settings = await isolated(kafka)
    keyring = Keyring(tmp_path / "keys")
    writer = HistoryWriter(seed=41)
    async with write_side(settings) as writes:
        await migrate_reporting(settings)
        total = await writes.append(
            with_notifications([*writer.story(), *writer.random_commits(60)])
        )
        for source, store in writes.stores.items():
            keyring.generate(source)
            assert await write_checkpoint(store, keyring) is not None
            total += 1
        writes.start_relays()
        await writes.published()
        async with running_reporting(settings):
            await wait_applied(settings, total)
            live = await projection_rows(settings)

            await rebuild_projection(settings)
            rebuilt = await projection_rows(settings)

            for store in writes.stores.values():
                await write_checkpoint(store, keyring)
                total += 1
            await writes.published()
            await wait_applied(settings, total)
            after = await projection_rows(settings)

    assert row_differences(live, rebuilt) == []
    streams = {row[1]: row[2] for row in live["consumer_streams"]}
    assert {streams[f"checkpoint-{source}"] for source in writes.stores} == {1}
    assert any(stream.startswith("notification-") for stream in streams)
    assert {row[1]: row[2] for row in after["consumer_streams"]}["checkpoint-meetings"] == 2
    assert sum(row[3] for row in after["consumer_sources"]) == total
    assert [record async for record in read_topic(settings, settings.topics.dead_letter)] == []
