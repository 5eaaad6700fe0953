"""Faults under a steady load: Kafka killed, PostgreSQL restarted, services killed mid-batch,
consumer offsets rewound. After each: nothing lost, nothing applied twice (by resolutions and
by reporting's live projection), the projection equals a fresh rebuild, audit passes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from ipmg_shared.settings import Settings
from tests.faults.conftest import (
    check_nothing_lost,
    isolated,
    prepare,
    reporting_checkpoints,
    stored_events,
    verified_during,
    verify_during_fault,
    wait_for_reporting,
)
from tests.support.load import MeetingLoad
from tests.support.processes import (
    ServiceProcess,
    private_kafka,
    private_postgres,
    running_service,
)
from tests.support.tokens import secretariat
from tests.support.waiting import wait_until

pytestmark = pytest.mark.infra
STEADY_S = 3.0


@contextlib.contextmanager
def running_system(
    settings: Settings, logs: Path
) -> Iterator[tuple[ServiceProcess, ServiceProcess, ServiceProcess]]:
    """Meetings, resolutions and reporting as processes, each ready to serve."""
    with (
        running_service("meetings", settings, logs) as meetings,
        running_service("resolutions", settings, logs) as resolutions,
        running_service("reporting", settings, logs) as reporting,
    ):
        for service in (meetings, resolutions, reporting):
            service.wait_ready()
        yield meetings, resolutions, reporting


async def test_kafka_killed_and_restarted_under_load(
    kafka: Settings, postgres: Settings, logs: Path, figures: dict[str, Any]
) -> None:
    with private_kafka(logs=logs) as broker:
        settings = isolated(kafka, "kafkakill").model_copy(
            update={"kafka_bootstrap_servers": broker.bootstrap}
        )
        await prepare(settings)
        with running_system(settings, logs) as (meetings, _, _):
            async with MeetingLoad(meetings.url, secretariat(settings)) as load:
                await asyncio.sleep(STEADY_S)
                await asyncio.to_thread(broker.kill)
                during = verify_during_fault(settings)
                await asyncio.sleep(STEADY_S)  # commands keep being accepted: PostgreSQL holds them
                await asyncio.to_thread(broker.start)
                await asyncio.sleep(STEADY_S)
                verified = await verified_during(during)
            await wait_until(lambda: _caught_up(settings, load.report.accepted), timeout=120)
            figures["kafka_killed"] = await check_nothing_lost(settings, load.report) | verified


async def _caught_up(settings: Settings, accepted: dict[str, str]) -> bool:
    connection = await asyncpg.connect(settings.service_dsn("resolutions"))
    try:
        known = await connection.fetchval("SELECT count(*) FROM known_meetings")
    finally:
        await connection.close()
    return bool(known == len(accepted))


async def test_postgres_restarted_under_load(
    kafka: Settings, logs: Path, figures: dict[str, Any]
) -> None:
    with private_postgres() as server:
        settings = isolated(kafka, "pgrestart").model_copy(
            update={"database_url": SecretStr(server.url)}
        )
        await prepare(settings)
        with running_system(settings, logs) as (meetings, resolutions, reporting):
            async with MeetingLoad(meetings.url, secretariat(settings)) as load:
                await asyncio.sleep(STEADY_S)
                await asyncio.to_thread(server.stop)
                during = verify_during_fault(settings)
                await asyncio.sleep(STEADY_S)
                await asyncio.to_thread(server.start)
                await asyncio.sleep(STEADY_S)
                verified = await verified_during(during)
            report = load.report
            assert report.statuses[503] > 0, "the outage is answered with 503"
            assert report.unavailable_without_retry_after == 0
            await wait_until(lambda: _caught_up(settings, report.accepted), timeout=120)
            figures["postgres_restarted"] = await check_nothing_lost(settings, report) | verified
            # Recovered without a restart: the same processes still serve.
            for service in (meetings, resolutions, reporting):
                assert service.process.poll() is None, service.name


@pytest.mark.parametrize("victim", ["meetings", "resolutions", "reporting"])
async def test_service_killed_mid_batch_and_restarted(
    kafka: Settings, logs: Path, figures: dict[str, Any], victim: str
) -> None:
    settings = isolated(kafka, f"kill{victim[:4]}").model_copy(update={"relay_batch_size": 5})
    await prepare(settings)
    with running_system(settings, logs) as system:
        meetings = system[0]
        services = {service.name: service for service in system}
        async with MeetingLoad(meetings.url, secretariat(settings)) as load:
            await asyncio.sleep(STEADY_S)
            at_kill = await applied_by(settings, victim)
            assert services[victim].stop(signal.SIGKILL) == -signal.SIGKILL
            assert at_kill > 0, f"{victim} was at work when killed"
            during = verify_during_fault(settings)
            await asyncio.sleep(1)
            with running_service(victim, settings, logs) as restarted:
                if victim == "meetings":
                    load.url = restarted.url
                restarted.wait_ready()
                await asyncio.sleep(STEADY_S)
                verified = await verified_during(during)
                await load.stop()
                await wait_until(lambda: _caught_up(settings, load.report.accepted), timeout=120)
                found = await check_nothing_lost(settings, load.report)
                if victim != "meetings":  # what the killed consumer had not committed came again
                    found["redelivered_after_restart"] = await consumed(
                        restarted, victim, "duplicate"
                    )
    figures[f"{victim}_killed"] = found | verified


async def applied_by(settings: Settings, service: str) -> int:
    """What a service had done so far: events stored (meetings) or applied (a consumer)."""
    if service == "meetings":
        return len(await stored_events(settings, "meetings"))
    if service == "reporting":
        return sum(count for _, count in (await reporting_checkpoints(settings)).values())
    connection = await asyncpg.connect(settings.service_dsn(service))
    try:
        applied = await connection.fetchval(
            "SELECT coalesce(sum(events_applied), 0) FROM consumer_sources WHERE consumer = $1",
            service,
        )
    finally:
        await connection.close()
    return int(applied)


async def consumed(service: ServiceProcess, consumer: str, outcome: str) -> int:
    """Events a running consumer handled with ``outcome`` since it started (its /metrics)."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{service.url}/metrics")).text
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "ipmg_events_consumed_total"
            and sample.labels.get("consumer") == consumer
            and sample.labels.get("outcome") == outcome
        )
    )


async def test_rewound_offsets_apply_nothing_twice(
    kafka: Settings, logs: Path, figures: dict[str, Any]
) -> None:
    settings = isolated(kafka, "rewind")
    await prepare(settings)
    consumers = ("resolutions", "reporting")
    with running_service("meetings", settings, logs) as meetings:
        meetings.wait_ready()
        with (
            running_service("resolutions", settings, logs) as resolutions,
            running_service("reporting", settings, logs) as reporting,
        ):
            resolutions.wait_ready()
            reporting.wait_ready()
            async with MeetingLoad(meetings.url, secretariat(settings)) as load:
                await asyncio.sleep(STEADY_S)
            await wait_until(lambda: _caught_up(settings, load.report.accepted), timeout=120)
            await wait_for_reporting(settings)  # so that all it reads again is a duplicate
        # Both consumers are stopped: rewind their groups to the start of every topic.
        topics = [settings.topics.events(source) for source in ("meetings", "resolutions")]
        for consumer in consumers:
            await _rewind(settings, settings.topics.group(consumer), topics)
        stored = len(await stored_events(settings, "meetings"))
        with (
            running_service("resolutions", settings, logs) as resolutions,
            running_service("reporting", settings, logs) as reporting,
        ):
            restarted = {"resolutions": resolutions, "reporting": reporting}
            for service in restarted.values():
                service.wait_ready()

            skipped: dict[str, int] = {}
            during = verify_during_fault(settings)  # while both read everything again

            async def read_everything_again() -> bool:
                for consumer in consumers:
                    skipped[consumer] = await consumed(restarted[consumer], consumer, "duplicate")
                return all(count >= stored for count in skipped.values())

            try:
                await wait_until(read_everything_again, timeout=120, interval=0.5)
            except AssertionError as error:
                raise AssertionError(f"{stored} events; skipped again: {skipped}") from error
            verified = await verified_during(during)
            found = await check_nothing_lost(settings, load.report) | verified
            figures["offsets_rewound"] = found
            found["redelivered_after_restart"] = await consumed(reporting, "reporting", "duplicate")
    assert found["duplicate_effects"] == 0
    assert found["reporting_duplicate_effects"] == 0


async def _rewind(settings: Settings, group: str, topics: list[str]) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # partitions of a topic not subscribed
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        consumer.assign(partitions)
        await consumer.commit(dict.fromkeys(partitions, 0))
    finally:
        await consumer.stop()
