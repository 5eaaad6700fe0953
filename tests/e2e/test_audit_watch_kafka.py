"""`ipmg audit watch` readiness follows the broker: red while Kafka does not answer, green again
once it does, on a private broker of the test's own that it stops and starts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from ipmg_shared.settings import Settings
from tests.e2e.test_audit_watch import running_watch
from tests.faults.conftest import isolated, prepare
from tests.support.processes import ServiceProcess, private_kafka

pytestmark = pytest.mark.infra
TURNS_WITHIN_S = 15.0  # a probe every 2 s, each given 3 s, the process's own pace


async def readiness_turns(watch: ServiceProcess, status: int) -> tuple[float, httpx.Response]:
    """Seconds until readiness answers ``status``, and that answer."""
    started = time.monotonic()
    while True:
        answer = await asyncio.to_thread(httpx.get, f"{watch.url}/health/ready", timeout=10)
        if answer.status_code == status:
            return time.monotonic() - started, answer
        assert time.monotonic() - started < 90, answer.text
        await asyncio.sleep(0.2)


async def test_readiness_turns_red_while_kafka_does_not_answer_and_back(
    kafka: Settings, tmp_path: Path
) -> None:
    with private_kafka(logs=tmp_path) as broker:
        own = kafka.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap})
        settings = isolated(own, "watchkafka")
        await prepare(settings)
        with running_watch(settings, tmp_path, tmp_path / "watch.sqlite3") as watch:
            watch.wait_ready()
            await asyncio.to_thread(broker.stop)
            took_down, down = await readiness_turns(watch, 503)
            assert took_down < TURNS_WITHIN_S, took_down
            checks = down.json()["checks"]
            assert checks["kafka"].startswith("unavailable"), checks
            assert {name for name, state in checks.items() if state != "ok"} == {"kafka"}
            await asyncio.to_thread(broker.start)
            took_up, up = await readiness_turns(watch, 200)
            assert up.json()["checks"]["kafka"] == "ok"
    print(f"\nwatch readiness: red {took_down:.1f} s after the stop, green {took_up:.1f} s after")
