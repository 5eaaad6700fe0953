"""Reporting as a process (`ipmg reporting run`) over a history whose fold takes about a
second: as-of requests in a crowd leave it ready, repeated ones come from its cache, and a
subject over its rate is answered 429 while another is not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ipmg_shared.actors import Role, Unit
from ipmg_shared.canonical import parse_instant
from ipmg_shared.settings import Settings
from tests.integration.reporting.system import (
    isolated,
    migrate_reporting,
    wait_applied,
    write_side,
)
from tests.support.processes import running_service
from tests.support.tokens import bearer
from tests.unit.reporting.history import HistoryWriter

pytestmark = pytest.mark.infra

HISTORY_COMMITS = 3000  # about 3,000 events: one fold of them takes about a second here
CROWD = 50
RATE_PER_MINUTE = 5
PROBE_TIMEOUT_S = 4.0  # the deployed health check's (deploy/compose.yaml)


@dataclass(frozen=True)
class LoadedReporting:
    url: str
    settings: Settings
    last_recorded: datetime
    logs: Path

    def headers(self, subject: str) -> dict[str, str]:
        return bearer(self.settings, Unit.NCSW, Role.AUDITOR, subject=subject)


@pytest.fixture(scope="module")
async def loaded(
    postgres: Settings, kafka: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LoadedReporting]:
    settings = await isolated(kafka)
    writer = HistoryWriter(seed=61)
    async with write_side(settings) as writes:
        await migrate_reporting(settings)
        total = await writes.append([*writer.story(), *writer.random_commits(HISTORY_COMMITS)])
        writes.start_relays()
        await writes.published(timeout=120)
        last = max(parse_instant(str(e["recorded_at"])) for e in await writes.envelopes())
    logs = tmp_path_factory.mktemp("reporting-under-load")
    with running_service(
        "reporting",
        settings,
        logs,
        IPMG_REPORTING_AS_OF_PER_MINUTE=str(RATE_PER_MINUTE),
    ) as service:
        await asyncio.to_thread(service.wait_ready)
        await wait_applied(settings, total, timeout=180)
        yield LoadedReporting(service.url, settings, last, logs)


async def as_of_tracker(
    client: httpx.AsyncClient, reporting: LoadedReporting, subject: str, instant: datetime
) -> httpx.Response:
    return await client.get(
        f"{reporting.url}/reports/resolutions",
        params={"as_of": instant.isoformat()},
        headers=reporting.headers(subject),
    )


async def test_a_crowd_of_as_of_requests_leaves_readiness_answering(
    loaded: LoadedReporting,
) -> None:
    # Each from a subject of its own, each for an instant of its own: no limit, no cache helps.
    instants = [loaded.last_recorded + timedelta(seconds=n) for n in range(CROWD)]
    probes: list[tuple[int, float]] = []
    async with httpx.AsyncClient(timeout=300) as client:

        async def probe_readiness(until: asyncio.Event) -> None:
            while not until.is_set():
                started = time.monotonic()
                try:
                    response = await client.get(
                        f"{loaded.url}/health/ready", timeout=PROBE_TIMEOUT_S
                    )
                    probes.append((response.status_code, time.monotonic() - started))
                except httpx.TimeoutException:
                    probes.append((0, time.monotonic() - started))
                await asyncio.sleep(0.2)

        crowd_done = asyncio.Event()
        prober = asyncio.create_task(probe_readiness(crowd_done))
        started = time.monotonic()
        answers = await asyncio.gather(
            *(
                as_of_tracker(client, loaded, f"crowd-{n}@ncsw.gov.pk", instant)
                for n, instant in enumerate(instants)
            )
        )
        crowd_s = time.monotonic() - started
        crowd_done.set()
        await prober

    assert [answer.status_code for answer in answers] == [200] * CROWD
    assert all(answer.json() == answers[0].json() for answer in answers)
    assert len(probes) >= 10, f"the crowd took {crowd_s:.1f} s: too short to probe"
    times = sorted(seconds for _, seconds in probes)
    print(
        f"{CROWD} answers in {crowd_s:.1f} s; {len(probes)} readiness probes: "
        f"median {times[len(times) // 2]:.3f} s, p99 {times[int(len(times) * 0.99)]:.3f} s, "
        f"slowest {times[-1]:.3f} s"
    )
    assert [status for status, _ in probes] == [200] * len(probes), probes
    assert times[-1] < PROBE_TIMEOUT_S


def as_of_replays(metrics_text: str) -> dict[str, float]:
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(metrics_text)
        if family.name == "ipmg_reporting_as_of_replays"
        for sample in family.samples
        if sample.name == "ipmg_reporting_as_of_replays_total"
    }


async def test_the_same_as_of_request_again_is_answered_from_the_cache(
    loaded: LoadedReporting,
) -> None:
    instant = loaded.last_recorded - timedelta(days=30)
    async with httpx.AsyncClient(timeout=60) as client:
        before = as_of_replays((await client.get(f"{loaded.url}/metrics")).text)
        answers, seconds = [], []
        for _ in range(3):
            started = time.monotonic()
            answers.append(await as_of_tracker(client, loaded, "cache@ncsw.gov.pk", instant))
            seconds.append(time.monotonic() - started)
        after = as_of_replays((await client.get(f"{loaded.url}/metrics")).text)

    assert [answer.status_code for answer in answers] == [200] * 3
    assert answers[1].json() == answers[2].json() == answers[0].json()
    print("first and cached answers:", ", ".join(f"{s:.3f} s" for s in seconds))
    assert after.get("folded", 0) - before.get("folded", 0) == 1
    assert after.get("cached", 0) - before.get("cached", 0) == 2


async def test_a_subject_over_its_rate_gets_429_and_another_does_not(
    loaded: LoadedReporting,
) -> None:
    instant = loaded.last_recorded - timedelta(days=60)
    async with httpx.AsyncClient(timeout=60) as client:
        allowed = [
            await as_of_tracker(client, loaded, "busy@ncsw.gov.pk", instant)
            for _ in range(RATE_PER_MINUTE)
        ]
        refused = await as_of_tracker(client, loaded, "busy@ncsw.gov.pk", instant)
        refused_page = await client.get(
            f"{loaded.url}/",
            params={"as_of": instant.isoformat()},
            headers=loaded.headers("busy@ncsw.gov.pk"),
        )
        live = await client.get(
            f"{loaded.url}/reports/resolutions", headers=loaded.headers("busy@ncsw.gov.pk")
        )
        other = await as_of_tracker(client, loaded, "calm@ncsw.gov.pk", instant)

    assert [answer.status_code for answer in allowed] == [200] * RATE_PER_MINUTE
    assert refused.status_code == 429, refused.text[:200]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused_page.status_code == 429, "the dashboard's as-of view counts too"
    assert 1 <= int(refused_page.headers["Retry-After"]) <= 60
    assert live.status_code == 200, "the live reports are not limited"
    assert other.status_code == 200, other.text
    assert other.json() == allowed[0].json()
