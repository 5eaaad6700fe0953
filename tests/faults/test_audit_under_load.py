"""An auditor verifies a live system: `ipmg audit verify` while commands are being written, and
the audit watch beside it verified to every store's head once they stop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ipmg_shared.settings import Settings
from tests.e2e.test_audit_watch import running_watch
from tests.e2e.test_make_up import verified_to_store_heads
from tests.faults.conftest import audit_table, isolated, prepare, run_ipmg
from tests.support.load import MeetingLoad
from tests.support.processes import running_service
from tests.support.tokens import secretariat

pytestmark = pytest.mark.infra
RUNS = 3
# About 15 commands a second: three clients, each pausing 150 ms after an answer.
STEADY_CLIENTS, STEADY_PAUSE_S = 3, 0.15


async def test_verify_exits_0_while_commands_are_written(
    kafka: Settings, logs: Path, figures: dict[str, Any]
) -> None:
    settings = isolated(kafka, "verifyload")
    await prepare(settings)
    runs: list[dict[str, int]] = []
    with running_service("meetings", settings, logs) as meetings:
        meetings.wait_ready()
        async with MeetingLoad(meetings.url, secretariat(settings)) as load:
            await asyncio.sleep(1.0)
            for _ in range(RUNS):
                stored_before = len(load.report.accepted)
                done, took_ms = await run_ipmg(settings, "audit", "verify")
                assert done.returncode == 0, done.stdout + done.stderr
                row = audit_table(done.stdout)["meetings"]
                assert row["result"] == "ok", done.stdout
                runs.append(
                    {
                        "exit_status": done.returncode,
                        "events_verified": int(row["events"]),
                        "newer_than_cut": int(row["newer than cut"]),
                        "commands_during_run": len(load.report.accepted) - stored_before,
                        "verify_ms": took_ms,
                    }
                )
    assert load.report.server_errors == 0, load.report.statuses
    # The load really ran beside each check: commands were accepted while it verified.
    assert all(run["commands_during_run"] > 0 for run in runs), runs
    figures["verify_during_load"] = runs


async def test_at_15_commands_a_second_verify_passes_thrice_and_the_watch_reaches_the_heads(
    kafka: Settings, logs: Path, figures: dict[str, Any]
) -> None:
    settings = isolated(kafka, "verifysteady")
    await prepare(settings)
    exits = []
    with (
        running_service("meetings", settings, logs) as meetings,
        running_watch(settings, logs, logs / "watch.sqlite3") as watch,
    ):
        meetings.wait_ready()
        watch.wait_ready()
        started = time.monotonic()
        async with MeetingLoad(
            meetings.url, secretariat(settings), clients=STEADY_CLIENTS, pause_s=STEADY_PAUSE_S
        ) as load:
            await asyncio.sleep(1.0)
            for _ in range(RUNS):
                done, _ = await run_ipmg(settings, "audit", "verify")
                assert done.returncode == 0, done.stdout + done.stderr
                exits.append(done.returncode)
        rate = len(load.report.accepted) / (time.monotonic() - started)
        assert 10 <= rate <= 20, rate
        # At rest: every source verified by the watch up to its store's head.
        deadline = time.monotonic() + 60
        metrics = ""
        while not verified_to_store_heads(metrics):
            assert time.monotonic() < deadline, metrics
            await asyncio.sleep(0.5)
            metrics = (await asyncio.to_thread(httpx.get, f"{watch.url}/metrics")).text
    assert load.report.server_errors == 0, load.report.statuses
    figures["verify_at_steady_load"] = {
        "commands_per_second": round(rate, 1),
        "exit_statuses": exits,
        "watch_verified_to_heads": True,
    }
