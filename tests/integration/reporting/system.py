"""A small IPMG system of a test's own on the real servers: the meetings and resolutions
event stores with their relays to Kafka, and reporting (in-process or as a process).

Each test gets its own database and topic prefix (``isolated``), so tests never share a
topic, a consumer group or a database; the session fixtures drop them all at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
from aiokafka import TopicPartition

from ipmg_contracts import meetings as meeting_events
from ipmg_contracts import notifications as notification_events
from ipmg_contracts import resolutions as resolution_events
from ipmg_reporting.main import service as reporting_service
from ipmg_reporting.rebuild import StreamPart
from ipmg_shared.actors import Role, Unit
from ipmg_shared.auth import issue_token
from ipmg_shared.db import (
    create_pool,
)
from ipmg_shared.events import JsonObject
from ipmg_shared.relay import Relay
from ipmg_shared.runtime import ServiceRuntime
from ipmg_shared.settings import Settings
from ipmg_shared.store import EventStore, NewEvent
from ipmg_shared.topics import ensure_topics
from tests.support.databases import fresh_service_database
from tests.support.reporting import admin_connection as admin_connection
from tests.support.reporting import projection_rows as projection_rows
from tests.support.waiting import wait_until
from tests.unit.reporting.history import Commit

REGISTRIES = {
    "meetings": meeting_events.REGISTRY,
    "resolutions": resolution_events.REGISTRY,
    "notifications": notification_events.REGISTRY,
}


def every_partition_split(
    lags: dict[TopicPartition, int], workers: int
) -> list[dict[TopicPartition, StreamPart]]:
    """Shares for ``rebuild.split_partitions`` that split every partition between the workers
    by stream (every other part to each), whatever its size: the split path, always taken."""
    return [
        {tp: StreamPart(frozenset(range(index, 2 * workers, workers)), 2 * workers) for tp in lags}
        for index in range(workers)
    ]


async def isolated(settings: Settings, *, partitions: int = 1) -> Settings:
    """Settings with a database and topic prefix of this test's own; its topics exist."""
    tag = uuid4().hex[:8]
    own = settings.model_copy(
        update={
            "database_prefix": f"{settings.database_prefix}{tag}_",
            "topic_prefix": f"{settings.topic_prefix}{tag}.",
            "topic_partitions": partitions,
        }
    )
    await ensure_topics(own)
    return own


def reader_token(settings: Settings, role: Role = Role.AUDITOR) -> str:
    return issue_token(settings, subject="reader@ncsw.gov.pk", unit=Unit.NCSW, role=role)


class WriteSide:
    """The two write services' event stores, appended to directly, and their relays."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.now = datetime(2015, 11, 1, tzinfo=UTC)
        self.stores: dict[str, EventStore] = {}
        self.relays: dict[str, Relay] = {}
        self._pools: list[asyncpg.Pool] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.appended = 0

    async def start(self) -> WriteSide:
        for source, registry in REGISTRIES.items():
            await fresh_service_database(self.settings, source)
            pool = await create_pool(self.settings.service_dsn(source), self.settings, max_size=4)
            self._pools.append(pool)
            # The store records each event at the instant of its commit (see ``append``).
            self.stores[source] = EventStore(pool, source, registry, clock=lambda: self.now)
            self.relays[source] = Relay(self.settings, self.settings.service_dsn(source), source)
        return self

    def start_relays(self) -> None:
        for relay in self.relays.values():
            self._tasks.append(asyncio.create_task(relay.run()))

    async def restart_relays(self) -> None:
        """New relays (new producers, which see partitions added since), as a restart has."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for source in self.relays:
            self.relays[source] = Relay(self.settings, self.settings.service_dsn(source), source)
        self.start_relays()

    async def append(self, commits: Iterable[Commit]) -> int:
        count = 0
        for commit in commits:
            # Recorded a few seconds after it occurred, and never before the last one.
            self.now = max(self.now + timedelta(microseconds=1), commit.at + timedelta(seconds=3))
            await self.stores[commit.source].append(
                commit.stream_id,
                None,
                [NewEvent(event, occurred_at=commit.at) for event in commit.events],
                actor=commit.actor,
                correlation_id=commit.correlation_id,
            )
            count += len(commit.events)
        self.appended += count
        return count

    async def published(self, timeout: float = 60) -> None:
        heads = {source: (await store.head())[0] for source, store in self.stores.items()}
        await wait_until(
            lambda: all(
                self.relays[source].published_position >= head for source, head in heads.items()
            ),
            timeout=timeout,
        )

    async def envelopes(self) -> list[JsonObject]:
        """Every stored event's JSON, each source in position order."""
        found: list[JsonObject] = []
        for store in self.stores.values():
            found += [event async for event in store.iter_json()]
        return found

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for pool in self._pools:
            await pool.close()


@contextlib.asynccontextmanager
async def write_side(settings: Settings) -> AsyncIterator[WriteSide]:
    side = await WriteSide(settings).start()
    try:
        yield side
    finally:
        await side.close()


async def migrate_reporting(settings: Settings) -> None:
    await reporting_service.migrate(settings)


@dataclass
class InProcessReporting:
    runtime: ServiceRuntime
    client: httpx.AsyncClient
    token: str

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.client.get(
            path, params=params, headers={"Authorization": f"Bearer {self.token}"}
        )
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()


@contextlib.asynccontextmanager
async def running_reporting(settings: Settings) -> AsyncIterator[InProcessReporting]:
    """The reporting service in this process, exactly as `ipmg reporting run` wires it."""
    runtime = ServiceRuntime(reporting_service, settings)
    app = runtime.http_app()
    async with (
        runtime.lifespan(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://reporting"
        ) as client,
    ):
        yield InProcessReporting(runtime, client, reader_token(settings))


async def events_applied(settings: Settings) -> int:
    connection = await admin_connection(settings)
    try:
        applied = await connection.fetchval(
            "SELECT coalesce(sum(events_applied), 0) FROM live.consumer_sources"
        )
    finally:
        await connection.close()
    return int(applied)


async def wait_applied(settings: Settings, total: int, timeout: float = 60) -> None:
    async def caught_up() -> bool:
        return await events_applied(settings) >= total

    await wait_until(caught_up, timeout=timeout, interval=0.2)
