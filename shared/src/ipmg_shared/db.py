"""PostgreSQL plumbing: pools with bounded waits, provisioning, versioned migrations."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from ipmg_shared.settings import Settings

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # What a handler gets: a pooled connection or a plain one; both speak the same API.
    DbConnection: TypeAlias = (
        asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
    )

# Faults of the database connection, not of the request or message: retry later (503 over
# HTTP, the same message again for a consumer). InternalClientError is what asyncpg raises on
# a connection the server dropped mid-operation.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)

MIGRATION_LOCK_KEY = 0x1A11_0001  # one migration run at a time per database
PROVISION_LOCK_KEY = 0x1A11_0002
SCHEMA_MIGRATIONS = "schema_migrations"
REVOKED_TOKENS = "revoked_tokens"  # every service database has it; its role only reads it
AUDITED_TABLES = ("events", "relay_progress")  # all the auditor role may read of a store


def _encode_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


async def init_connection(connection: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(
            type_name, encoder=_encode_json, decoder=json.loads, schema="pg_catalog"
        )


async def keep_session(connection: asyncpg.Connection) -> None:
    """A pooled connection's release: nothing to reset, so no reset query.

    asyncpg's default reset (unlock advisory locks, close cursors, unlisten, reset settings)
    is a round trip on every release, three of a command's ten. Pooled connections never
    leave such state: their locks are transaction-scoped, their settings ``SET LOCAL``, their
    cursors die at commit, and listeners live on connections of their own. asyncpg still
    rolls back a transaction left open before this runs.
    """


async def create_pool(
    dsn: str,
    settings: Settings,
    *,
    max_size: int | None = None,
    min_size: int | None = None,
    **options: Any,
) -> asyncpg.Pool:
    """A pool whose every wait is bounded: connect, acquire (by callers) and each command."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=settings.pool_min_size if min_size is None else min_size,
        max_size=max_size or settings.pool_max_size,
        timeout=settings.pool_acquire_timeout_s,
        command_timeout=settings.db_command_timeout_s,
        init=init_connection,
        reset=keep_session,
        **options,
    )
    assert pool is not None
    return pool


async def connect(dsn: str, settings: Settings) -> asyncpg.Connection:
    connection = await asyncpg.connect(
        dsn, timeout=settings.pool_acquire_timeout_s, command_timeout=settings.db_command_timeout_s
    )
    await init_connection(connection)
    return connection


@dataclass(frozen=True)
class Migration:
    name: str  # unique across every set applied to a database, e.g. "shared/0001_event_store"
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationChanged(RuntimeError):
    """An applied migration's file no longer matches what was applied: never edit history."""


def migrations_in(package: str, prefix: str, names: Iterable[str] | None = None) -> list[Migration]:
    """The ``*.sql`` files of ``package``'s ``migrations`` folder, in name order."""
    folder = resources.files(package).joinpath("migrations")
    files = (
        [entry for entry in folder.iterdir() if entry.name.endswith(".sql")]
        if names is None
        else [folder.joinpath(name) for name in names]
    )
    return [
        Migration(name=f"{prefix}/{entry.name.removesuffix('.sql')}", sql=entry.read_text())
        for entry in sorted(files, key=lambda entry: entry.name)
    ]


def event_store_migrations() -> list[Migration]:
    return migrations_in(
        "ipmg_shared",
        "shared",
        ["0001_event_store.sql", "0003_append_events.sql", "0005_append_only_always.sql"],
    )


def consumer_migrations() -> list[Migration]:
    return migrations_in("ipmg_shared", "shared", ["0002_consumer_checkpoints.sql"])


def revocation_migrations() -> list[Migration]:
    return migrations_in("ipmg_shared", "shared", ["0004_revoked_tokens.sql"])


async def provision_service_database(settings: Settings, service: str) -> None:
    """Create the service's role and database if missing; only that role may connect to it."""
    role = settings.service_role(service)
    database = settings.service_database(service)
    password = settings.service_db_password(service).get_secret_value()
    admin = await connect(settings.admin_dsn(), settings)
    try:
        await admin.execute("SELECT pg_advisory_lock($1)", PROVISION_LOCK_KEY)
        role_exists = await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
        verb = "ALTER" if role_exists else "CREATE"
        statement = await admin.fetchval(
            f"SELECT format('{verb} ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)",
            role,
            password,
        )
        await admin.execute(statement)
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await admin.execute(await _quoted(admin, "CREATE DATABASE %I", database))
        await admin.execute(await _quoted(admin, "REVOKE ALL ON DATABASE %I FROM PUBLIC", database))
        await admin.execute(
            await _quoted(admin, "GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I", database, role)
        )
        # The maintenance database (the administrative URL's) is the administrator's alone.
        maintenance = await admin.fetchval("SELECT current_database()")
        await admin.execute(
            await _quoted(
                admin, "REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC", maintenance
            )
        )
    finally:
        await admin.close()


async def drop_prefixed_databases(settings: Settings) -> None:
    """Drop every database and role named with ``settings.database_prefix`` (a test run's or a
    benchmark's own), ending the connections still open to them."""
    prefix = f"{settings.database_prefix}%"
    admin = await connect(settings.admin_dsn(), settings)
    try:
        databases = "SELECT datname FROM pg_database WHERE datname LIKE $1"
        for row in await admin.fetch(databases, prefix):
            drop = "DROP DATABASE IF EXISTS %I WITH (FORCE)"
            await admin.execute(await _quoted(admin, drop, row["datname"]))
        for row in await admin.fetch("SELECT rolname FROM pg_roles WHERE rolname LIKE $1", prefix):
            await admin.execute(await _quoted(admin, "DROP ROLE IF EXISTS %I", row["rolname"]))
    finally:
        await admin.close()


async def _quoted(connection: asyncpg.Connection, template: str, *names: str) -> str:
    placeholders = ", ".join(f"${i}::text" for i in range(1, len(names) + 1))
    statement: str = await connection.fetchval(
        f"SELECT format('{template}', {placeholders})", *names
    )
    return statement


async def apply_migrations(
    settings: Settings,
    service: str,
    migrations: Sequence[Migration],
    append_only_tables: Iterable[str] = (),
) -> list[str]:
    """Apply what is new, in order, under a lock; then grant the service role least privilege.

    The role may read and write its working tables but only SELECT and INSERT on append-only
    ones (the event log). Returns the names of the migrations applied by this call.
    """
    connection = await connect(settings.admin_dsn(settings.service_database(service)), settings)
    applied_now: list[str] = []
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        await connection.execute(
            f"""CREATE TABLE IF NOT EXISTS {SCHEMA_MIGRATIONS} (
                    name text PRIMARY KEY,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied = {
            row["name"]: row["checksum"]
            for row in await connection.fetch(f"SELECT name, checksum FROM {SCHEMA_MIGRATIONS}")
        }
        for migration in [*migrations, *revocation_migrations()]:
            if migration.name in applied:
                if applied[migration.name] != migration.checksum:
                    raise MigrationChanged(f"migration {migration.name} was changed after it ran")
                continue
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    f"INSERT INTO {SCHEMA_MIGRATIONS} (name, checksum) VALUES ($1, $2)",
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(migration.name)
        await _grant_least_privilege(connection, settings.service_role(service), append_only_tables)
        if "events" in append_only_tables:
            await _grant_auditor_access(connection, settings, settings.service_database(service))
    finally:
        await connection.close()
    return applied_now


async def _grant_least_privilege(
    connection: asyncpg.Connection, role: str, append_only_tables: Iterable[str]
) -> None:
    async with connection.transaction():
        await connection.execute(
            await _quoted(connection, "GRANT USAGE ON SCHEMA public TO %I", role)
        )
        await connection.execute(
            await _quoted(
                connection,
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %I",
                role,
            )
        )
        await connection.execute(
            await _quoted(connection, "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %I", role)
        )
        for table in [SCHEMA_MIGRATIONS, REVOKED_TOKENS, *append_only_tables]:
            await connection.execute(
                await _quoted(
                    connection, "REVOKE UPDATE, DELETE, TRUNCATE ON TABLE %I FROM %I", table, role
                )
            )
        for table in (SCHEMA_MIGRATIONS, REVOKED_TOKENS):
            await connection.execute(
                await _quoted(connection, f"REVOKE INSERT ON TABLE {table} FROM %I", role)
            )


async def _grant_auditor_access(
    connection: asyncpg.Connection, settings: Settings, database: str
) -> None:
    """The auditor role (made, or its password set) may connect to this store's database and
    SELECT its audited tables, nothing else: an audit never holds a credential that writes."""
    role = settings.auditor_role
    password = settings.auditor_db_password.get_secret_value()
    with contextlib.suppress(asyncpg.DuplicateObjectError):  # made by another store's
        await connection.execute(await _quoted(connection, "CREATE ROLE %I LOGIN", role))
    await connection.execute(
        await _quoted(connection, "ALTER ROLE %I LOGIN PASSWORD %L", role, password)
    )
    async with connection.transaction():
        await connection.execute(
            await _quoted(connection, "GRANT CONNECT ON DATABASE %I TO %I", database, role)
        )
        await connection.execute(
            await _quoted(connection, "GRANT USAGE ON SCHEMA public TO %I", role)
        )
        await connection.execute(
            await _quoted(connection, "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM %I", role)
        )
        for table in AUDITED_TABLES:
            await connection.execute(
                await _quoted(connection, "GRANT SELECT ON TABLE %I TO %I", table, role)
            )
