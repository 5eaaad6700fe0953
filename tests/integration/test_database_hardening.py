"""PostgreSQL hardening: the maintenance database is the administrator's alone, and the event
log's append-only triggers fire even in a session that replicates (session_replication_role)."""

from __future__ import annotations

from uuid import uuid4

import asyncpg
import pytest

from ipmg_shared.settings import Settings
from ipmg_shared.store import EventStore
from tests.support.sample_events import SECRETARIAT, notes

pytestmark = pytest.mark.infra


async def test_no_service_role_connects_to_the_maintenance_database(
    postgres: Settings, service_name: str
) -> None:
    admin = await asyncpg.connect(postgres.admin_dsn())
    try:
        maintenance = await admin.fetchval("SELECT current_database()")
        for privilege in ("CONNECT", "TEMPORARY"):
            assert not await admin.fetchval(
                "SELECT has_database_privilege('public', $1, $2)", maintenance, privilege
            )
        role = postgres.service_role(service_name)
        assert not await admin.fetchval(
            "SELECT has_database_privilege($1, $2, 'CONNECT')", role, maintenance
        )
    finally:
        await admin.close()
    intruding = postgres.service_dsn(service_name).rsplit("/", 1)[0] + "/" + maintenance
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await asyncpg.connect(intruding)


async def test_a_replica_session_cannot_change_the_log(
    store: EventStore, admin_connection: asyncpg.Connection
) -> None:
    await store.append("note-1", None, notes("kept"), actor=SECRETARIAT, correlation_id=uuid4())
    enabled = await admin_connection.fetch(
        "SELECT tgname, tgenabled::text FROM pg_trigger WHERE tgrelid = 'events'::regclass "
        "AND NOT tgisinternal ORDER BY tgname"
    )
    assert [(row["tgname"], row["tgenabled"]) for row in enabled] == [
        ("events_append_only", "A"),
        ("events_no_truncate", "A"),
    ]
    # A superuser in a replication session: ordinary triggers would not fire here.
    await admin_connection.execute("SET session_replication_role = replica")
    for change in (
        "UPDATE events SET payload = '{}'::jsonb",
        "DELETE FROM events",
        "TRUNCATE events",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await admin_connection.execute(change)
    await admin_connection.execute("RESET session_replication_role")
    assert await admin_connection.fetchval("SELECT count(*) FROM events") == 1
