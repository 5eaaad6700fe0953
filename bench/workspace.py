"""Databases and topics of the benchmark's own, on the same servers as everything else.

Every run takes a unique prefix (like the tests' session settings), so it never disturbs a
system started with ``make up`` or a test run on the same servers, and drops all it made.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg

from ipmg_shared.db import (
    apply_migrations,
    connect,
    create_pool,
    drop_prefixed_databases,
    event_store_migrations,
    provision_service_database,
)
from ipmg_shared.settings import Settings
from ipmg_shared.topics import admin_client, ensure_topics


@dataclass
class Workspace:
    settings: Settings
    _databases: int = field(default=0, init=False)

    def next_name(self, kind: str) -> str:
        """A fresh service name (its database and role carry the run's prefix)."""
        self._databases += 1
        return f"{kind}{self._databases}"

    async def event_store(self, kind: str) -> str:
        """A new database migrated like a write service's event store; returns the service."""
        service = self.next_name(kind)
        await provision_service_database(self.settings, service)
        await apply_migrations(self.settings, service, event_store_migrations(), ("events",))
        return service

    async def library_database(self, kind: str) -> str:
        """A new empty database whose role may create tables (the library makes its own)."""
        service = self.next_name(kind)
        await provision_service_database(self.settings, service)
        admin = await self.admin(service)
        try:
            role = self.settings.service_role(service)
            await admin.execute(f'GRANT CREATE ON SCHEMA public TO "{role}"')
        finally:
            await admin.close()
        return service

    async def pool(self, service: str, *, size: int) -> asyncpg.Pool:
        """A pool as the service's own least-privileged role, as a running service has."""
        return await create_pool(self.settings.service_dsn(service), self.settings, max_size=size)

    async def admin(self, service: str) -> asyncpg.Connection:
        """A superuser connection to the service's database (bulk fills, statistics)."""
        return await connect(
            self.settings.admin_dsn(self.settings.service_database(service)), self.settings
        )

    async def settle(self) -> None:
        """The earlier benchmarks' databases dropped, and every page they dirtied written out
        (``CHECKPOINT``), so the next benchmark shares the machine with none of their work: a
        rebuild of 10^6 events leaves gigabytes for the checkpointer to write and tables of
        millions of rows for autovacuum, which would otherwise do that work during the next
        benchmark's runs. (Their topics stay until the end: a topic's name is taken again
        only once Kafka has finished deleting it.)"""
        await drop_prefixed_databases(self.settings)
        admin = await connect(self.settings.admin_dsn("postgres"), self.settings)
        try:
            await admin.execute("CHECKPOINT")
        finally:
            await admin.close()

    async def topics(self, *sources: str) -> None:
        await ensure_topics(self.settings, sources)

    async def drop_everything(self) -> None:
        await drop_prefixed_databases(self.settings)
        kafka = admin_client(self.settings)
        await kafka.start()
        try:
            topics = self.settings.topic_prefix
            ours = [topic for topic in await kafka.list_topics() if topic.startswith(topics)]
            if ours:
                await kafka.delete_topics(ours)
        finally:
            await kafka.close()


@asynccontextmanager
async def workspace() -> AsyncIterator[Workspace]:
    run = uuid.uuid4().hex[:8]
    space = Workspace(
        Settings(
            database_prefix=f"ipmgbench_{run}_",
            topic_prefix=f"ipmgbench-{run}.",
            relay_poll_interval_s=0.2,
            pool_max_size=16,
        )
    )
    try:
        yield space
    finally:
        await space.drop_everything()
