"""The auditor's PostgreSQL role, made by the migration of every write store: it reads the
event log and the relay's progress, and can change nothing."""

from __future__ import annotations

from uuid import uuid4

import asyncpg
import pytest

from ipmg_shared.audit import audit_source
from ipmg_shared.settings import Settings
from ipmg_shared.store import EventStore
from tests.support.databases import fresh_service_database
from tests.support.sample_events import REGISTRY, SECRETARIAT, notes

pytestmark = pytest.mark.infra

REFUSED = [
    "INSERT INTO events (event_id) VALUES (gen_random_uuid())",
    "UPDATE events SET type = 'Forged'",
    "DELETE FROM events",
    "TRUNCATE events",
    "UPDATE relay_progress SET published_position = 0",
    "INSERT INTO relay_progress DEFAULT VALUES",
    "SELECT count(*) FROM command_results",
    "SELECT count(*) FROM schema_migrations",
    "CREATE TABLE sneaky (x int)",
    "CREATE TEMPORARY TABLE sneaky (x int)",
]


async def test_the_auditor_role_reads_the_log_and_changes_nothing(
    postgres: Settings, service_pool: asyncpg.Pool, service_name: str
) -> None:
    store = EventStore(service_pool, service_name, REGISTRY)
    await store.append("note-1", None, notes("n1"), actor=SECRETARIAT, correlation_id=uuid4())
    auditor = await asyncpg.connect(postgres.auditor_dsn(service_name))
    try:
        assert await auditor.fetchval("SELECT current_user") == postgres.auditor_role
        assert await auditor.fetchval("SELECT count(*) FROM events") == 1
        await auditor.fetchval("SELECT count(*) FROM relay_progress")
        for statement in REFUSED:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await auditor.execute(statement)
    finally:
        await auditor.close()
    # Migrating again (a new password, another store) keeps the grants; the audit reads as it.
    await fresh_service_database(postgres, f"svc{uuid4().hex[:8]}")
    audited = await audit_source(postgres, service_name, {}, with_topic=False)
    assert audited.store.head_position == 1, audited


async def test_the_auditor_role_cannot_reach_a_database_without_an_event_store(
    postgres: Settings, service_name: str
) -> None:
    admin = await asyncpg.connect(postgres.admin_dsn())
    database = f"{postgres.database_prefix}plain{uuid4().hex[:6]}"
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        await admin.execute(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC')
    finally:
        await admin.close()
    elsewhere = postgres.auditor_dsn(service_name).rsplit("/", 1)[0] + "/" + database
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await asyncpg.connect(elsewhere)
