"""Faults under a steady load: Kafka killed, PostgreSQL restarted, services killed mid-batch,
consumer offsets rewound. After each: nothing lost, nothing applied twice, audit passes."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr

from ipmg_shared.settings import Settings
from tests.faults.conftest import check_nothing_lost, isolated, prepare
from tests.support.load import MeetingLoad
from tests.support.processes import private_kafka, private_postgres, running_service
from tests.support.tokens import secretariat
from tests.support.waiting import wait_until

pytestmark = pytest.mark.infra
STEADY_S = 3.0


async def test_kafka_killed_and_restarted_under_load(
    kafka: Settings, postgres: Settings, logs: Path, figures: dict[str, Any]
) -> None:
    with private_kafka() as broker:
        settings = isolated(kafka, "kafkakill").model_copy(
            update={"kafka_bootstrap_servers": broker.bootstrap}
        )
        await prepare(settings)
        with (
            running_service("meetings", settings, logs) as meetings,
            running_service("resolutions", settings, logs) as resolutions,
        ):
            meetings.wait_ready()
            resolutions.wait_ready()
            async with MeetingLoad(meetings.url, secretariat(settings)) as load:
                await asyncio.sleep(STEADY_S)
                await asyncio.to_thread(broker.kill)
                await asyncio.sleep(STEADY_S)  # commands keep being accepted: PostgreSQL holds them
                await asyncio.to_thread(broker.start)
                await asyncio.sleep(STEADY_S)
            await wait_until(lambda: _caught_up(settings, load.report.accepted), timeout=120)
            figures["kafka_killed"] = await check_nothing_lost(settings, load.report)


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
        with (
            running_service("meetings", settings, logs) as meetings,
            running_service("resolutions", settings, logs) as resolutions,
        ):
            meetings.wait_ready()
            resolutions.wait_ready()
            async with MeetingLoad(meetings.url, secretariat(settings)) as load:
                await asyncio.sleep(STEADY_S)
                await asyncio.to_thread(server.stop)
                await asyncio.sleep(STEADY_S)
                await asyncio.to_thread(server.start)
                await asyncio.sleep(STEADY_S)
            report = load.report
            assert report.statuses[503] > 0, "the outage is answered with 503"
            assert report.unavailable_without_retry_after == 0
            await wait_until(lambda: _caught_up(settings, report.accepted), timeout=120)
            figures["postgres_restarted"] = await check_nothing_lost(settings, report)
            # Recovered without a restart: the same processes still serve.
            assert meetings.process.poll() is None
            assert resolutions.process.poll() is None


@pytest.mark.parametrize("victim", ["meetings", "resolutions"])
async def test_service_killed_mid_batch_and_restarted(
    kafka: Settings, logs: Path, figures: dict[str, Any], victim: str
) -> None:
    settings = isolated(kafka, f"kill{victim[:4]}").model_copy(update={"relay_batch_size": 5})
    await prepare(settings)
    services = {}
    with running_service("meetings", settings, logs) as meetings:
        services["meetings"] = meetings
        meetings.wait_ready()
        with running_service("resolutions", settings, logs) as resolutions:
            services["resolutions"] = resolutions
            resolutions.wait_ready()
            async with MeetingLoad(meetings.url, secretariat(settings)) as load:
                await asyncio.sleep(STEADY_S)
                services[victim].stop(signal.SIGKILL)
                await asyncio.sleep(1)
                with running_service(victim, settings, logs) as restarted:
                    if victim == "meetings":
                        load.url = restarted.url
                    restarted.wait_ready()
                    await asyncio.sleep(STEADY_S)
                    await load.stop()
                    await wait_until(
                        lambda: _caught_up(settings, load.report.accepted), timeout=120
                    )
            figures[f"{victim}_killed"] = await check_nothing_lost(settings, load.report)


async def test_rewound_offsets_apply_nothing_twice(
    kafka: Settings, logs: Path, figures: dict[str, Any]
) -> None:
    settings = isolated(kafka, "rewind")
    await prepare(settings)
    with running_service("meetings", settings, logs) as meetings:
        meetings.wait_ready()
        with running_service("resolutions", settings, logs) as resolutions:
            resolutions.wait_ready()
            async with MeetingLoad(meetings.url, secretariat(settings)) as load:
                await asyncio.sleep(STEADY_S)
            await wait_until(lambda: _caught_up(settings, load.report.accepted), timeout=60)
        # resolutions is stopped: rewind its consumer group to the start of the topic.
        await _rewind(
            settings, settings.topics.group("resolutions"), settings.topics.events("meetings")
        )
        with running_service("resolutions", settings, logs) as resolutions:
            resolutions.wait_ready()
            await asyncio.sleep(STEADY_S)  # it reads everything again
    figures["offsets_rewound"] = await check_nothing_lost(settings, load.report)
    assert figures["offsets_rewound"]["duplicate_effects"] == 0


async def _rewind(settings: Settings, group: str, topic: str) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # partitions of a topic not subscribed
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.commit(dict.fromkeys(partitions, 0))
    finally:
        await consumer.stop()
