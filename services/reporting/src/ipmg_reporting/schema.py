"""Where copies of the projection live: one PostgreSQL schema per copy, swapped by renaming.

``live`` serves queries and the live consumer (the service's pool has ``search_path`` =
``live, public``); ``rebuild`` is filled beside it and renamed to ``live`` in one transaction;
the copy it replaces becomes ``retired`` and is dropped. Both copies are made from the same
``projection.sql``.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import TYPE_CHECKING

from ipmg_reporting.projections import PROJECTION_VERSION
from ipmg_shared.db import Migration, migrations_in

if TYPE_CHECKING:
    from ipmg_shared.db import DbConnection

SERVICE = "reporting"
LIVE = "live"
REBUILD = "rebuild"
RETIRED = "retired"
SEARCH_PATH = f"{LIVE},public"
# Live handlers hold it shared for their transaction; a rebuild holds it exclusively while it
# catches up and swaps, so the live consumer pauses for that moment only.
SWAP_LOCK_KEY = 0x1A11_0040
REBUILD_LOCK_KEY = 0x1A11_0041  # one rebuild at a time

SERVER_SETTINGS = {"search_path": SEARCH_PATH}
# The pool keeps its prepared statements across a swap: renaming a schema makes PostgreSQL drop
# every cached plan in every session, and the next execution finds its tables by name again,
# in the copy live by then (tests/integration/reporting/test_reporting_schema_swap.py).
POOL_OPTIONS = {"server_settings": SERVER_SETTINGS}


def projection_ddl() -> str:
    return resources.files("ipmg_reporting").joinpath("projection.sql").read_text()


def live_projection_migration() -> Migration:
    """Makes the live copy where there is none yet, from the current ``projection.sql``.

    A live copy of another version is left alone: the service rebuilds it beside itself when
    it starts. Named by version, so a changed DDL without a new version fails ``migrate``.
    """
    sql = f"""-- The live projection copy, version {PROJECTION_VERSION}, owned by the service role.
DO $migration$
DECLARE
    previous_path text := current_setting('search_path');
BEGIN
    IF to_regclass('{LIVE}.projection_version') IS NULL THEN
        EXECUTE format('SET LOCAL ROLE %I', current_database());
        PERFORM set_config('search_path', '{LIVE}', true);
        EXECUTE $projection${projection_ddl()}$projection$;
        INSERT INTO projection_version (version) VALUES ({PROJECTION_VERSION});
        RESET ROLE;
        PERFORM set_config('search_path', previous_path, true);
    END IF;
END
$migration$;
"""
    return Migration(name=f"{SERVICE}/live_projection_v{PROJECTION_VERSION}", sql=sql)


def reporting_migrations() -> list[Migration]:
    return [*migrations_in("ipmg_reporting", SERVICE), live_projection_migration()]


# The secondary indexes of projection.sql: a rebuild makes them after its bulk load, which
# costs less than keeping them up to date row by row.
SECONDARY_INDEX = re.compile(r"^CREATE INDEX [^;]*;", re.MULTILINE)
INDEXED_TABLE = re.compile(r"^CREATE INDEX \w+ ON (\w+)")
# Tables a rebuild fills by COPY alone until it catches up: their keys are built after the bulk
# load as well (one sort, not a random insert into each index for every row). ``documents``
# and ``consumer_streams`` keep theirs: a rebuild looks documents up and upserts checkpoints.
BULK_LOADED = ("event_log", "timeline")


async def create_copy(
    connection: DbConnection, schema: str, *, indexes: bool = True
) -> dict[str, list[str]]:
    """A fresh, empty copy of the projection in ``schema`` (any leftover there is dropped).

    Without ``indexes``, the secondary indexes and the keys of the bulk-loaded tables are left
    out, and the statements that make them are returned by table, for ``create_indexes`` after
    the load. The keys' definitions are read back from the catalog, so they are
    projection.sql's.
    """
    ddl = projection_ddl()
    async with connection.transaction():
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await connection.execute(f"CREATE SCHEMA {schema}")
        await connection.execute("SELECT set_config('search_path', $1, true)", schema)
        if indexes:
            await connection.execute(ddl)
            return {}
        await connection.execute(SECONDARY_INDEX.sub("", ddl))
        keys = await connection.fetch(
            "SELECT c.relname AS table_name, k.conname, pg_get_constraintdef(k.oid) AS definition "
            "FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
            "WHERE k.conrelid = ANY($1::regclass[]) AND k.contype IN ('p', 'u') "
            "ORDER BY k.contype, k.conname",
            [f"{schema}.{table}" for table in BULK_LOADED],
        )
        for key in keys:
            await connection.execute(
                f"ALTER TABLE {key['table_name']} DROP CONSTRAINT {key['conname']}"
            )
    by_table: dict[str, list[str]] = {}
    for key in keys:
        by_table.setdefault(key["table_name"], []).append(
            f"ALTER TABLE {key['table_name']} ADD CONSTRAINT {key['conname']} {key['definition']}"
        )
    for index in SECONDARY_INDEX.findall(ddl):
        table = INDEXED_TABLE.match(index)
        assert table is not None, f"an index of projection.sql names no table: {index}"
        by_table.setdefault(table.group(1), []).append(index)
    return by_table


async def create_indexes(connection: DbConnection, schema: str, statements: list[str]) -> None:
    """What ``create_copy`` left out of one table, made once the table of ``schema`` is loaded
    (adding a key locks its table: one table's statements go one after another)."""
    async with connection.transaction():
        await connection.execute("SELECT set_config('search_path', $1, true)", schema)
        for statement in statements:
            await connection.execute(statement)


async def stored_version(connection: DbConnection, schema: str = LIVE) -> int | None:
    """The projection version of a copy; None when the copy does not exist."""
    exists = await connection.fetchval("SELECT to_regclass($1)", f"{schema}.projection_version")
    if exists is None:
        return None
    version: int | None = await connection.fetchval(
        f"SELECT max(version) FROM {schema}.projection_version"
    )
    return version


async def swap_in_rebuilt_copy(connection: DbConnection) -> None:
    """Inside the caller's transaction: the rebuilt copy becomes live, the old one retired."""
    if await connection.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", LIVE):
        await connection.execute(f"DROP SCHEMA IF EXISTS {RETIRED} CASCADE")
        await connection.execute(f"ALTER SCHEMA {LIVE} RENAME TO {RETIRED}")
    await connection.execute(f"ALTER SCHEMA {REBUILD} RENAME TO {LIVE}")
