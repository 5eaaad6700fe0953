"""An auditor verifies a live system: `ipmg audit verify` while commands are being written."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ipmg_shared.settings import Settings
from tests.faults.conftest import audit_table, isolated, prepare, run_ipmg
from tests.support.load import MeetingLoad
from tests.support.processes import running_service
from tests.support.tokens import secretariat

pytestmark = pytest.mark.infra
RUNS = 3


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
