"""`ipmg audit watch` as a process beside the meetings service: it verifies each new event as it
is published, reports a tampered store row or a forged topic record within seconds, and after
`kill -9` resumes from its verified head without verifying or reporting anything twice."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from ipmg_shared.db import init_connection
from ipmg_shared.settings import Settings
from ipmg_shared.store import json_from_row
from tests.faults.conftest import isolated, prepare, run_ipmg
from tests.support.meetings import extraordinary_meeting
from tests.support.processes import IPMG, ServiceProcess, free_port, running_service, service_env
from tests.support.tokens import secretariat
from tests.support.waiting import wait_until

pytestmark = pytest.mark.infra
STORE_EVERY_S = 1.0
REPORTED_WITHIN_S = 10.0  # the bound: a cadence of 1 s, one store read, the process's own pace


@contextmanager
def running_watch(settings: Settings, logs: Path, state: Path) -> Iterator[ServiceProcess]:
    port = free_port()
    log_path = logs / f"audit-watch-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *(str(IPMG), "audit", "watch", "--port", str(port), "--state", str(state)),
                *("--store-every", str(STORE_EVERY_S)),
            ],
            env=service_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    watch = ServiceProcess("audit-watch", port, process, log_path)
    try:
        yield watch
    finally:
        watch.stop()


def metric(watch: ServiceProcess, name: str, source: str = "meetings") -> float:
    text = httpx.get(f"{watch.url}/metrics", timeout=10).text
    return next(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and sample.labels.get("source") == source
    )


async def schedule(meetings: ServiceProcess, settings: Settings, count: int) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for n in range(count):
            response = await client.post(
                f"{meetings.url}/meetings",
                json=extraordinary_meeting("2018-03-15", "punjab", f"V{n}"),
                headers=secretariat(settings),
            )
            assert response.status_code == 201, response.text


async def store_head(settings: Settings) -> int:
    connection = await asyncpg.connect(settings.service_dsn("meetings"))
    try:
        return int(await connection.fetchval("SELECT coalesce(max(position), 0) FROM events"))
    finally:
        await connection.close()


async def verified_to_head(watch: ServiceProcess, settings: Settings) -> int:
    head = await store_head(settings)

    async def there() -> bool:
        position = await asyncio.to_thread(metric, watch, "ipmg_audit_verified_position")
        return head > 0 and position == head

    await wait_until(there, timeout=60, interval=0.3)
    return head


async def reported_within(watch: ServiceProcess) -> tuple[float, dict[str, object]]:
    """Seconds until readiness turns red, and the logged break."""
    started = time.monotonic()

    def red() -> bool:
        return httpx.get(f"{watch.url}/health/ready", timeout=10).status_code == 503

    await wait_until(lambda: asyncio.to_thread(red), timeout=60, interval=0.2)
    took = time.monotonic() - started
    assert await asyncio.to_thread(metric, watch, "ipmg_audit_breaks_found") == 1
    return took, logged_breaks(watch)[0]


def logged_breaks(watch: ServiceProcess) -> list[dict[str, object]]:
    lines = watch.log_path.read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if '"event": "audit_break"' in line]


async def event_at(settings: Settings, position: int) -> dict[str, object]:
    connection = await asyncpg.connect(settings.service_dsn("meetings"))
    try:
        row = await connection.fetchrow(
            "SELECT event_id::text AS event_id, stream_id FROM events WHERE position = $1",
            position,
        )
    finally:
        await connection.close()
    assert row is not None
    return dict(row)


async def test_a_tampered_store_row_is_reported_by_watch_and_verify(
    kafka: Settings, tmp_path: Path
) -> None:
    settings = isolated(kafka, "watchstore")
    await prepare(settings)
    with (
        running_service("meetings", settings, tmp_path) as meetings,
        running_watch(settings, tmp_path, tmp_path / "watch.sqlite3") as watch,
    ):
        meetings.wait_ready()
        watch.wait_ready()
        await schedule(meetings, settings, 5)
        await verified_to_head(watch, settings)
        admin = await asyncpg.connect(settings.admin_dsn(settings.service_database("meetings")))
        try:
            async with admin.transaction():
                # The triggers fire ALWAYS, so the owner disables them, as it still may.
                await admin.execute("ALTER TABLE events DISABLE TRIGGER USER")
                await admin.execute(
                    "UPDATE events SET payload = jsonb_set(payload, '{venue}', '\"Forged\"') "
                    "WHERE position = 2"
                )
        finally:
            await admin.close()
        took, found = await reported_within(watch)
        assert took < REPORTED_WITHIN_S
        tampered = await event_at(settings, 2)
        assert (found["position"], found["kind"]) == (2, "changed"), found
        assert (found["event_id"], found["stream_id"]) == (
            tampered["event_id"],
            tampered["stream_id"],
        )
        done, _ = await run_ipmg(settings, "audit", "verify", "--source", "meetings")
        assert done.returncode == 1, done.stdout
        assert "position 2: changed" in done.stderr


async def forge_copy(settings: Settings, position: int) -> None:
    """A record that claims to be the event at ``position`` with another venue."""
    connection = await asyncpg.connect(settings.service_dsn("meetings"))
    try:
        await init_connection(connection)
        row = await connection.fetchrow("SELECT * FROM events WHERE position = $1", position)
    finally:
        await connection.close()
    assert row is not None
    original = json_from_row(row)
    forged = {**original, "payload": {**original["payload"], "venue": "Forged"}}
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topics.events("meetings"),
            json.dumps(forged).encode(),
            key=str(original["stream_id"]).encode(),
        )
    finally:
        await producer.stop()


async def test_watch_resumes_after_kill_9_and_reports_a_forged_record_once(
    kafka: Settings, tmp_path: Path
) -> None:
    settings = isolated(kafka, "watchkill")
    await prepare(settings)
    state = tmp_path / "watch.sqlite3"
    with running_service("meetings", settings, tmp_path) as meetings:
        meetings.wait_ready()
        with running_watch(settings, tmp_path, state) as watch:
            watch.wait_ready()
            await schedule(meetings, settings, 4)
            before = await verified_to_head(watch, settings)
            assert watch.stop(signal.SIGKILL) == -signal.SIGKILL
        await schedule(meetings, settings, 3)
        with running_watch(settings, tmp_path, state) as watch:
            watch.wait_ready()
            after = await verified_to_head(watch, settings)
            # Only what came after the kill was verified again: nothing twice.
            verified = await asyncio.to_thread(metric, watch, "ipmg_audit_events_verified_total")
            assert verified == after - before > 0

            await forge_copy(settings, 3)
            took, found = await reported_within(watch)
            assert took < REPORTED_WITHIN_S
            original = await event_at(settings, 3)
            assert (found["position"], found["kind"]) == (3, "changed"), found
            assert found["event_id"] == original["event_id"]
            assert found["stream_id"] == original["stream_id"]
            done, _ = await run_ipmg(settings, "audit", "verify", "--source", "meetings")
            assert done.returncode == 1, done.stdout
            assert "position 3: " in done.stderr
            assert watch.stop(signal.SIGKILL) == -signal.SIGKILL
        with running_watch(settings, tmp_path, state) as watch:
            # The break is remembered: readiness stays red, and it is not reported again.
            await wait_until(
                lambda: asyncio.to_thread(_answers, watch.url), timeout=60, interval=0.3
            )
            ready = await asyncio.to_thread(httpx.get, f"{watch.url}/health/ready")
            assert ready.status_code == 503
            assert await asyncio.to_thread(metric, watch, "ipmg_audit_breaks_found") == 1
            await asyncio.sleep(3 * STORE_EVERY_S)
            assert logged_breaks(watch) == []
            assert "watch_resumed_after_break" in watch.log_path.read_text()


def _answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/health/live", timeout=3)
    except httpx.TransportError:
        return False
    return True
