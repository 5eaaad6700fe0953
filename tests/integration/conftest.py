from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import asyncpg
import pytest

from ipmg_shared.db import (
    create_pool,
    init_connection,
)
from ipmg_shared.settings import Settings
from ipmg_shared.store import EventStore
from ipmg_shared.topics import ensure_topics
from tests.support.databases import fresh_service_database
from tests.support.sample_events import REGISTRY


@pytest.fixture
async def service_name(postgres: Settings) -> str:
    return await fresh_service_database(postgres, f"svc{uuid4().hex[:8]}")


@pytest.fixture
async def service_pool(postgres: Settings, service_name: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool connected as the service's own least-privileged role."""
    pool = await create_pool(postgres.service_dsn(service_name), postgres, max_size=12)
    yield pool
    await pool.close()


@pytest.fixture
async def store(kafka: Settings, service_pool: asyncpg.Pool, service_name: str) -> EventStore:
    """A store of the sample events whose topic exists, for tests that publish it."""
    await ensure_topics(kafka, [service_name])
    return EventStore(service_pool, service_name, REGISTRY)


@pytest.fixture
async def admin_connection(
    postgres: Settings, service_name: str
) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the service's database (for tampering, as an intruder would)."""
    connection = await asyncpg.connect(postgres.admin_dsn(postgres.service_database(service_name)))
    await init_connection(connection)
    yield connection
    await connection.close()
