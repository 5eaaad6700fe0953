"""An auditor's path, end to end: the sample history through the services, `ipmg audit verify`
on stores and topics, `ipmg audit export`, then on the bundle alone `ipmg audit verify` and
`ipmg audit replay`, whose reports equal the reporting service's `?as_of=` answers."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from ipmg_shared.actors import Role, Unit
from ipmg_shared.settings import Settings
from tests.e2e.test_seed import run_seed
from tests.support.processes import IPMG, ServiceProcess, running_service, service_env
from tests.support.tokens import bearer
from tests.support.waiting import wait_until

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
def reporting(
    write_services: dict[str, ServiceProcess],
    migrated: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    with running_service("reporting", migrated, tmp_path_factory.mktemp("reporting")) as process:
        process.wait_ready()
        yield process


def ipmg(settings: Settings, keys: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(IPMG), *args],
        env={**service_env(settings), "IPMG_KEYS_DIR": str(keys)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def test_bundle_replay_equals_the_reporting_services_as_of_answers(
    write_services: dict[str, ServiceProcess],
    reporting: ServiceProcess,
    migrated: Settings,
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    assert ipmg(migrated, keys, "audit", "keys", "generate").returncode == 0
    await asyncio.to_thread(run_seed, migrated, write_services)
    signed = await asyncio.to_thread(ipmg, migrated, keys, "audit", "checkpoint")
    assert signed.returncode == 0, signed.stderr

    auditor = bearer(migrated, Unit.NCSW, Role.AUDITOR)
    async with httpx.AsyncClient(timeout=60) as client:

        async def caught_up() -> bool:
            status = (await client.get(f"{reporting.url}/reports/status", headers=auditor)).json()
            applied = {s["source"]: s["last_position"] for s in status["sources"]}
            heads = await _store_heads(migrated)
            return all(applied.get(source, 0) >= head - 1 for source, head in heads.items())

        await wait_until(caught_up, timeout=120, interval=0.5)

        verified = await asyncio.to_thread(ipmg, migrated, keys, "audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr

        bundle = tmp_path / "bundle"
        exported = await asyncio.to_thread(
            ipmg, migrated, keys, "audit", "export", "--out", str(bundle)
        )
        assert exported.returncode == 0, exported.stderr
        offline = await asyncio.to_thread(
            ipmg, migrated, keys, "audit", "verify", str(bundle), "--keys", str(keys)
        )
        assert offline.returncode == 0, offline.stdout + offline.stderr

        recorded = sorted(
            json.loads(line)["recorded_at"]
            for path in (bundle / "events").glob("*.jsonl")
            for line in path.read_text().splitlines()
        )
        instants = [recorded[len(recorded) // 4], recorded[len(recorded) // 2], recorded[-1]]
        for instant in instants:
            out = tmp_path / f"replay-{instant}.json"
            replayed = await asyncio.to_thread(
                ipmg,
                migrated,
                keys,
                "audit",
                "replay",
                str(bundle),
                "--as-of",
                instant,
                "--out",
                str(out),
            )
            assert replayed.returncode == 0, replayed.stderr
            reports = json.loads(out.read_text())
            for name, path in [
                ("tracker", "resolutions"),
                ("scorecards", "scorecards"),
                ("meetings", "meetings"),
            ]:
                answer = await client.get(
                    f"{reporting.url}/reports/{path}", params={"as_of": instant}, headers=auditor
                )
                assert answer.status_code == 200, answer.text
                assert reports[name] == answer.json(), (name, instant)
            assert reports["tracker"], "the replay is not empty"

        # The human trail of one resolution, from the stores, with its feedback's comments.
        [commented] = [
            event["payload"]["resolution_id"]
            for line in (bundle / "events" / "resolutions.jsonl").read_text().splitlines()
            if (event := json.loads(line))["type"] == "FeedbackReceived"
            and event["payload"].get("comments") == "Add a common reporting template"
        ]
        trail = await asyncio.to_thread(ipmg, migrated, keys, "audit", "trail", commented)
        assert trail.returncode == 0, trail.stderr
        assert "resolution passed" in trail.stdout
        assert "(ncsw, secretariat)" in trail.stdout
        assert "\n    comments: Add a common reporting template\n" in trail.stdout
        unknown = await asyncio.to_thread(ipmg, migrated, keys, "audit", "trail", "no-such-id")
        assert unknown.returncode == 1
        assert (
            unknown.stderr.strip()
            == "ipmg: error: no meeting or resolution no-such-id in any store"
        )


async def _store_heads(settings: Settings) -> dict[str, int]:
    heads: dict[str, Any] = {}
    for source in ("meetings", "resolutions"):
        connection = await asyncpg.connect(settings.service_dsn(source))
        heads[source] = await connection.fetchval(
            "SELECT coalesce(max(position), 0) FROM events WHERE type <> 'ChainCheckpointSigned'"
        )
        await connection.close()
    return heads
