"""Reporting as a real process (`ipmg reporting run`), killed with SIGKILL mid-consumption and
started again; then `ipmg reporting rebuild` from the command line."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import pytest

from ipmg_shared.settings import Settings
from tests.integration.reporting.system import (
    events_applied,
    isolated,
    migrate_reporting,
    projection_rows,
    wait_applied,
    write_side,
)
from tests.support.processes import IPMG, running_service, service_env
from tests.support.waiting import wait_until
from tests.unit.reporting.history import HistoryWriter

pytestmark = pytest.mark.infra


async def test_kill_9_mid_consumption_then_restart_equals_a_fresh_rebuild(
    postgres: Settings, kafka: Settings, tmp_path: Path
) -> None:
    settings = await isolated(kafka)
    writer = HistoryWriter(seed=41)
    async with write_side(settings) as writes:
        await migrate_reporting(settings)
        total = await writes.append([*writer.story(), *writer.random_commits(180)])
        writes.start_relays()
        await writes.published()

    with running_service("reporting", settings, tmp_path) as first:

        async def some_applied() -> bool:
            return await events_applied(settings) >= 40

        await wait_until(some_applied, timeout=60, interval=0.05)
        first.stop(signal.SIGKILL)
        at_kill = await events_applied(settings)
    assert first.process.returncode == -signal.SIGKILL
    assert 40 <= at_kill < total, "the kill came mid-consumption"

    with running_service("reporting", settings, tmp_path) as second:
        await wait_applied(settings, total, timeout=90)
        await asyncio.sleep(0.5)  # anything applied twice would show in the counts now
        live = await projection_rows(settings)
        second.stop()

    # Each event applied exactly once: logged once, counted once, every stream complete.
    assert len(live["event_log"]) == total
    assert sum(row[3] for row in live["consumer_sources"]) == total
    assert {row[1]: row[2] for row in live["consumer_streams"]} == dict(
        writer_stream_versions(writer)
    )

    done = await asyncio.to_thread(
        subprocess.run,
        [str(IPMG), "reporting", "rebuild"],
        env={**service_env(settings), "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "events/s" in done.stdout
    assert f"{total:,} applied" in done.stdout
    rebuilt = await projection_rows(settings)
    for table, rows in live.items():
        assert rebuilt[table] == rows, table


def writer_stream_versions(writer: HistoryWriter) -> list[tuple[str, int]]:
    """Each stream and its number of events, as the write services' states say."""
    return [
        *((f"meeting-{key}", state.version) for key, state in writer.meetings.items()),
        *((f"resolution-{key}", state.version) for key, state in writer.resolutions.items()),
    ]
