"""Fixtures shared by every test layer.

Integration and end-to-end tests run against the real Kafka and PostgreSQL that
``make test`` starts (deploy/local/infra.sh). A missing server is a failure, never a skip.
Each test session works in databases, roles and topics of its own (a unique prefix), so it
never disturbs a system started with ``make up`` on the same servers.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from ipmg_shared.db import drop_prefixed_databases
from ipmg_shared.settings import Settings

RUN_ID = uuid.uuid4().hex[:8]
# The tests run on the development defaults of every secret; so does every process they start.
os.environ["IPMG_ENVIRONMENT"] = "development"


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(
        database_prefix=f"ipmgtest_{RUN_ID}_",
        topic_prefix=f"ipmgtest-{RUN_ID}.",
        relay_poll_interval_s=0.2,
        log_json=True,
    )


async def _postgres_answers(settings: Settings) -> str | None:
    try:
        connection = await asyncpg.connect(settings.admin_dsn(), timeout=5)
    except Exception as error:
        return repr(error)
    await connection.close()
    return None


@pytest.fixture(scope="session")
async def postgres(settings: Settings) -> AsyncIterator[Settings]:
    problem = await _postgres_answers(settings)
    if problem is not None:
        pytest.fail(f"PostgreSQL does not answer at DATABASE_URL ({problem}); run `make up-infra`")
    yield settings
    await drop_prefixed_databases(settings)


@pytest.fixture(scope="session")
async def kafka(settings: Settings) -> AsyncIterator[Settings]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=10000
    )
    try:
        await asyncio.wait_for(admin.start(), 20)
        await admin.list_topics()
    except Exception as error:
        pytest.fail(
            f"Kafka does not answer at {settings.kafka_bootstrap_servers} ({error!r}); "
            "run `make up-infra`"
        )
    from ipmg_shared.topics import ensure_topics

    await ensure_topics(settings)
    yield settings
    test_topics = [
        name for name in await admin.list_topics() if name.startswith(settings.topic_prefix)
    ]
    if test_topics:
        await admin.delete_topics(test_topics)
    await admin.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _quiet_logs() -> None:
    from ipmg_shared.logging import configure_logging

    configure_logging(os.environ.get("IPMG_TEST_LOG_LEVEL", "WARNING"), json=True)
