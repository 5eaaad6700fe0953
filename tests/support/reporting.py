"""Reading reporting's projection copies row for row, to compare a live copy with a rebuild."""

from __future__ import annotations

from collections import Counter
from typing import Any

import asyncpg

from ipmg_shared.settings import Settings

# Every table of a projection copy, read in a fixed order; what differs by construction
# (when a row was written) is left out.
PROJECTION_ROWS = {
    "projection_version": "SELECT version FROM {schema}.projection_version",
    "documents": "SELECT kind, entity_id, version, doc::text FROM {schema}.documents "
    "ORDER BY kind, entity_id",
    "timeline": "SELECT entity_id, source, position, recorded_at, is_primary, entry::text "
    "FROM {schema}.timeline ORDER BY entity_id, source, position",
    "event_log": "SELECT source, position, event_id, recorded_at, envelope::text "
    "FROM {schema}.event_log ORDER BY source, position",
    "consumer_streams": "SELECT consumer, stream_id, last_version "
    "FROM {schema}.consumer_streams ORDER BY consumer, stream_id",
    "consumer_sources": "SELECT consumer, source, last_position, events_applied "
    "FROM {schema}.consumer_sources ORDER BY consumer, source",
    # A rebuild makes its secondary indexes after the bulk load: the same ones.
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = '{schema}' "
    "ORDER BY indexname",
}

ProjectionRows = dict[str, list[tuple[Any, ...]]]


async def admin_connection(settings: Settings) -> asyncpg.Connection:
    """A superuser connection to reporting's database (both copies' schemas are visible)."""
    return await asyncpg.connect(settings.admin_dsn(settings.service_database("reporting")))


async def projection_rows(settings: Settings, schema: str = "live") -> ProjectionRows:
    connection = await admin_connection(settings)
    try:
        return {
            table: [tuple(row) for row in await connection.fetch(sql.format(schema=schema))]
            for table, sql in PROJECTION_ROWS.items()
        }
    finally:
        await connection.close()


def row_differences(expected: ProjectionRows, actual: ProjectionRows) -> list[str]:
    """Per table, how two copies differ (empty when equal row for row); short enough to print."""
    differences = []
    for table in PROJECTION_ROWS:
        want, got = expected.get(table, []), actual.get(table, [])
        if want == got:
            continue
        missing = list((Counter(want) - Counter(got)).elements())
        extra = list((Counter(got) - Counter(want)).elements())
        differences.append(
            f"{table}: {len(want)} rows expected, {len(got)} found; "
            f"{len(missing)} missing (first {missing[:1]}), {len(extra)} extra (first {extra[:1]})"
            + ("; same rows, another order" if not missing and not extra else "")
        )
    return differences
