"""The live copy's handler and pool: prepared statements across a swap, what it refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import asyncpg
import pytest

from ipmg_contracts.meetings import REGISTRY
from ipmg_reporting.live import UnstorableEvent, apply_to_live, hold_off_swaps
from ipmg_reporting.schema import (
    POOL_OPTIONS,
    REBUILD,
    SERVICE,
    create_copy,
    swap_in_rebuilt_copy,
)
from ipmg_shared.db import create_pool
from ipmg_shared.envelope import Envelope
from ipmg_shared.settings import Settings
from tests.integration.reporting.system import migrate_reporting
from tests.unit.reporting.history import lifecycle

pytestmark = pytest.mark.infra

LOGGED = "SELECT count(*) FROM event_log WHERE position > $1"
LOG_ONE = "INSERT INTO event_log VALUES ('meetings', $1, $2, now(), '{}')"
PREPARED = "SELECT name FROM pg_prepared_statements WHERE statement = $1"


@pytest.fixture
async def own_reporting(postgres: Settings) -> Settings:
    """Settings of a reporting database of this test's own, migrated."""
    own = f"{postgres.database_prefix}{uuid4().hex[:8]}_"
    settings = postgres.model_copy(update={"database_prefix": own})
    await migrate_reporting(settings)
    return settings


@pytest.fixture
async def live_pool(own_reporting: Settings) -> AsyncIterator[asyncpg.Pool]:
    """One connection of the service's live pool, as the service opens it."""
    pool = await create_pool(
        own_reporting.service_dsn(SERVICE), own_reporting, min_size=1, max_size=1, **POOL_OPTIONS
    )
    yield pool
    await pool.close()


async def test_statements_prepared_before_a_swap_read_and_write_the_copy_swapped_in(
    own_reporting: Settings, live_pool: asyncpg.Pool
) -> None:
    # As a rebuild does it: the service's role, a connection of its own.
    rebuilder = await asyncpg.connect(own_reporting.service_dsn(SERVICE), statement_cache_size=0)
    try:
        async with live_pool.acquire() as connection, connection.transaction():
            await connection.execute(LOG_ONE, 1, uuid4())
            assert await connection.fetchval(LOGGED, 0) == 1  # both prepared on the first copy
            prepared = await connection.fetchval(PREPARED, LOGGED)
            assert prepared is not None

        await create_copy(rebuilder, REBUILD)
        await rebuilder.execute(f"INSERT INTO {REBUILD}.event_log SELECT * FROM live.event_log")
        await rebuilder.execute(
            f"INSERT INTO {REBUILD}.event_log VALUES ('meetings', 2, $1, now(), '{{}}')", uuid4()
        )
        async with rebuilder.transaction():
            await swap_in_rebuilt_copy(rebuilder)

        async with live_pool.acquire() as connection, connection.transaction():
            assert await connection.fetchval(LOGGED, 0) == 2  # the copy swapped in
            assert await connection.fetchval(PREPARED, LOGGED) == prepared  # the same statement
            await connection.execute(LOG_ONE, 3, uuid4())
        assert await rebuilder.fetchval("SELECT count(*) FROM live.event_log") == 3
        assert await rebuilder.fetchval("SELECT count(*) FROM retired.event_log") == 1
    finally:
        await rebuilder.close()


async def test_the_live_handler_refuses_an_event_holding_a_nul_and_writes_nothing(
    live_pool: asyncpg.Pool,
) -> None:
    # The columns are json, which would take "\u0000": the handler refuses it itself, as a
    # rebuild skips it, so that the two copies stay alike.
    scheduled = lifecycle().envelopes()[0]
    data = scheduled.to_json()
    data["payload"]["venue"] = "Lahore\x00"
    holding_nul = Envelope.model_validate(data)
    async with live_pool.acquire() as connection:
        async with connection.transaction():
            await hold_off_swaps(connection)
            with pytest.raises(UnstorableEvent):
                await apply_to_live(
                    connection, holding_nul, holding_nul.decode(REGISTRY), holding_nul.to_bytes()
                )
        assert await connection.fetchval("SELECT count(*) FROM event_log") == 0
        async with connection.transaction():
            await hold_off_swaps(connection)
            await apply_to_live(
                connection, scheduled, scheduled.decode(REGISTRY), scheduled.to_bytes()
            )
        assert await connection.fetchval("SELECT count(*) FROM event_log") == 1
        assert await connection.fetchval("SELECT count(*) FROM timeline") >= 1
