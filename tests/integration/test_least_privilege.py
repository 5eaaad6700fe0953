"""Each service's PostgreSQL role sees only its own database, and only appends to its log."""

from __future__ import annotations

import asyncpg
import pytest

from ipmg_shared.settings import Settings
from tests.support.databases import fresh_service_database

pytestmark = pytest.mark.infra


async def test_a_service_role_cannot_connect_to_another_services_database(
    postgres: Settings,
) -> None:
    first = await fresh_service_database(postgres, "privone")
    second = await fresh_service_database(postgres, "privtwo")
    own = await asyncpg.connect(postgres.service_dsn(first))
    assert await own.fetchval("SELECT current_user") == postgres.service_role(first)
    await own.close()
    intruding = (
        postgres.service_dsn(first).rsplit("/", 1)[0] + "/" + (postgres.service_database(second))
    )
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await asyncpg.connect(intruding)


async def test_a_service_role_cannot_change_its_schema_or_migrations(
    postgres: Settings, service_name: str
) -> None:
    connection = await asyncpg.connect(postgres.service_dsn(service_name))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("CREATE TABLE sneaky (x int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("DROP TRIGGER events_append_only ON events")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("DELETE FROM schema_migrations")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("INSERT INTO schema_migrations VALUES ('x', 'y')")
    finally:
        await connection.close()
