"""Pooled connections are released without asyncpg's reset query: what that relies on."""

from __future__ import annotations

import pytest

from ipmg_shared.db import create_pool
from ipmg_shared.settings import Settings

pytestmark = pytest.mark.infra


async def test_a_transaction_left_open_is_rolled_back_when_its_connection_returns(
    postgres: Settings, service_name: str
) -> None:
    # One connection: the next acquire is certain to get the same session back.
    pool = await create_pool(postgres.service_dsn(service_name), postgres, min_size=1, max_size=1)
    try:
        connection = await pool.acquire()
        backend = connection.get_server_pid()
        await connection.execute("CREATE TEMP TABLE marks (n int)")  # lives with the session
        await connection.execute("BEGIN")
        await connection.execute("SET LOCAL statement_timeout = '1234ms'")
        await connection.execute("SELECT pg_advisory_xact_lock(42)")
        await connection.execute("INSERT INTO marks VALUES (1)")
        await pool.release(connection)  # mid-transaction, as a cancelled request would

        async with pool.acquire() as again:
            assert again.get_server_pid() == backend  # the same session, not a new one
            assert not again.is_in_transaction()
            assert await again.fetchval("SELECT count(*) FROM marks") == 0
            assert await again.fetchval("SHOW statement_timeout") != "1234ms"
            held = await again.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1", backend
            )
            assert held == 0
    finally:
        await pool.close()
