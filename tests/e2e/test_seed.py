"""`ipmg seed` loads the sample history through the HTTP APIs, and a second run changes nothing."""

from __future__ import annotations

import asyncio
import subprocess

import httpx
import pytest

from ipmg_sample.history import MEETINGS, SampleMeeting
from ipmg_shared.settings import Settings
from tests.support.processes import IPMG, ServiceProcess, service_env
from tests.support.tokens import secretariat

pytestmark = pytest.mark.infra


def commands_of(meeting: SampleMeeting) -> int:
    steps = [meeting.schedule, meeting.reschedule, meeting.held, meeting.minutes]
    count = sum(step is not None for step in steps)
    for resolution in meeting.resolutions:
        single = [
            resolution.passed,
            resolution.circulate,
            resolution.amend,
            resolution.approve or None,
            resolution.sign,
            resolution.action_plan,
            resolution.close,
        ]
        count += sum(step is not None for step in single)
        count += len(resolution.feedback) + len(resolution.progress)
    return count


def run_seed(settings: Settings, services: dict[str, ServiceProcess]) -> str:
    done = subprocess.run(
        [
            str(IPMG),
            "seed",
            "--meetings-url",
            services["meetings"].url,
            "--resolutions-url",
            services["resolutions"].url,
        ],
        env=service_env(settings),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def test_seed_twice_applies_once(
    write_services: dict[str, ServiceProcess], migrated: Settings
) -> None:
    # Another test of the session may have seeded already: the first run applies what is new.
    first = await asyncio.to_thread(run_seed, migrated, write_services)
    second = await asyncio.to_thread(run_seed, migrated, write_services)
    commands = int(first.split()[2])
    assert commands == sum(map(commands_of, MEETINGS))
    assert second == f"sample history: {commands} commands, 0 applied, {commands} already there"
    assert len(MEETINGS) >= 6
    held = [m for m in MEETINGS if m.held]
    assert len({m.held["host_unit"] for m in held if m.held}) >= 6  # hosting rotates
    assert MEETINGS[0].held is not None
    assert MEETINGS[0].held["held_on"] == "2015-11-26"
    assert MEETINGS[0].held["host_unit"] == "ajk"


def test_seed_against_no_service_fails_in_one_line(migrated: Settings) -> None:
    done = subprocess.run(
        [
            str(IPMG),
            "seed",
            "--meetings-url",
            "http://127.0.0.1:9",
            "--resolutions-url",
            "http://127.0.0.1:9",
        ],
        env=service_env(migrated),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("ipmg: error: ")
    assert "cannot reach the services" in done.stderr


async def test_seeded_history_reads_back(
    write_services: dict[str, ServiceProcess], migrated: Settings
) -> None:
    await asyncio.to_thread(run_seed, migrated, write_services)
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.get(
            f"{write_services['meetings'].url}/openapi.json", headers=secretariat(migrated)
        )
    paths = response.json()["paths"]
    assert {"/meetings", "/meetings/{aggregate_id}/held", "/meetings/{aggregate_id}"} <= set(paths)
