"""The live projection in PostgreSQL: the consumer's handler, and what reports read.

The handler runs inside the shared consumer runner's transaction: it loads the one document
the event changes, applies the pure ``project`` to it, saves it, and adds the event's
timeline entries and its envelope (as published) to reporting's own copy of the log, all in the
transaction that also moves the runner's checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
from pydantic import ValidationError

from ipmg_reporting.as_of_replays import AsOfRateLimit, AsOfReplays
from ipmg_reporting.projections import (
    CONSUMER,
    DOCUMENT_MODELS,
    NUL_HELD,
    PROJECTION_VERSION,
    SOURCES,
    Document,
    DocumentKind,
    Documents,
    Model,
    TimelineEntry,
    document_key,
    holds_nul,
    project,
)
from ipmg_reporting.schema import SWAP_LOCK_KEY
from ipmg_shared.envelope import Envelope
from ipmg_shared.events import DomainEvent

if TYPE_CHECKING:
    from ipmg_shared.db import DbConnection


class ProjectionSwapped(asyncpg.SerializationError):
    """A rebuilt copy was swapped in while this event waited: take the event again.

    A serialisation failure to the runner (a transient fault): it rolls back, leaves the
    offset uncommitted, and the redelivered event meets the new copy's checkpoints.
    """


class ProjectionOutdated(asyncpg.SerializationError):
    """The live copy is of another projection version: wait for the rebuild to swap."""


class UnstorableEvent(Exception):
    """An event this projection cannot store (a NUL character in one of its strings)."""


class DocumentsUnreadable(Exception):
    """Stored documents this code cannot read (a copy of another version, until rebuilt)."""


# Two round trips per event besides the runner's own: one read, one write.
SWAP_LOCK_SHARED = f"SELECT pg_advisory_xact_lock_shared({SWAP_LOCK_KEY})"
READ_LIVE_STATE = """
SELECT (SELECT max(version) FROM projection_version) AS version,
       (SELECT last_version FROM consumer_streams WHERE consumer = $1 AND stream_id = $2)
           AS last_version,
       (SELECT doc FROM documents WHERE kind = $3::text AND entity_id = $4::text) AS doc
"""
WRITE_EVENT = """
WITH saved_document AS (
    INSERT INTO documents (kind, entity_id, version, doc)
    SELECT $1::text, $2::text, $3::integer, $4::text::json WHERE $1::text IS NOT NULL
    ON CONFLICT (kind, entity_id) DO UPDATE SET version = EXCLUDED.version, doc = EXCLUDED.doc
), timeline_entries AS (
    INSERT INTO timeline (entity_id, source, position, recorded_at, is_primary, entry)
    SELECT entity_id, $5, $6, $7, is_primary, entry::json
    FROM unnest($8::text[], $9::boolean[], $10::text[]) AS entries (entity_id, is_primary, entry)
)
INSERT INTO event_log (source, position, event_id, recorded_at, envelope)
VALUES ($5, $6, $11, $7, $12::text::json)
"""


async def hold_off_swaps(connection: DbConnection) -> None:
    """First in each of the consumer's transactions: no swap of copies until it ends.

    Taken before the runner reads its checkpoints, so they are read in the copy that stays
    live while the transaction applies its events.
    """
    await connection.execute(SWAP_LOCK_SHARED)


async def apply_to_live(
    connection: DbConnection, envelope: Envelope, event: DomainEvent, published: bytes
) -> None:
    """The reporting consumer's handler (see ``ipmg_shared.consumer.EventHandler``), in a
    transaction that began with ``hold_off_swaps``.

    The log keeps the envelope as it was published, as a rebuild keeps it: the two copies hold
    the same text, and none is rendered again (valid UTF-8 JSON: the envelope was read from it).
    """
    logged = published.decode()
    if holds_nul(envelope, logged):
        raise UnstorableEvent(NUL_HELD)
    key = document_key(event)
    state = await connection.fetchrow(
        READ_LIVE_STATE,
        CONSUMER,
        envelope.stream_id,
        None if key is None else key.kind,
        None if key is None else key.entity_id,
    )
    assert state is not None
    if state["version"] != PROJECTION_VERSION:
        raise ProjectionOutdated(
            f"live projection is version {state['version']}, this code {PROJECTION_VERSION}"
        )
    # The runner checked the event against its checkpoint after ``hold_off_swaps``, so in
    # this copy; checked again here, as a swap between the two would apply it to the wrong one.
    if (state["last_version"] or 0) != envelope.stream_version - 1:
        raise ProjectionSwapped(f"{envelope.stream_id} moved on in the swapped-in copy")
    before = None if key is None or state["doc"] is None else read_document(key.kind, state["doc"])
    change = project(before, envelope, event)
    saved = change.document if change.key is not None else None
    entity_ids, primaries, entries = zip(*change.timeline.rows(), strict=True)
    await connection.execute(
        WRITE_EVENT,
        None if saved is None or change.key is None else change.key.kind,
        None if saved is None or change.key is None else change.key.entity_id,
        None if saved is None else saved.version,
        None if saved is None else saved.model_dump_json(),
        envelope.source,
        envelope.position,
        envelope.recorded_at,
        entity_ids,
        primaries,
        entries,
        envelope.event_id,
        logged,
    )


def read_document(kind: DocumentKind | str, data: Any) -> Document:
    try:
        return DOCUMENT_MODELS[kind].model_validate(data)
    except (KeyError, ValidationError) as error:
        raise DocumentsUnreadable(f"a stored {kind} document does not match this code") from error


# --- what reports read --------------------------------------------------------------------

# Each source's last position, from the primary key's index: a new event changes it.
LOG_HEAD = """
SELECT source, (SELECT max(position) FROM event_log WHERE event_log.source = sources.source)
    AS last
FROM unnest($1::text[]) AS sources (source) ORDER BY source
"""


@dataclass(frozen=True)
class Snapshot:
    """Documents as of an instant: the live copy (``model`` None) or the log folded to it."""

    documents: Documents
    instant: datetime  # the reports' "now": the as-of instant, or the moment of reading
    model: Model | None = None


class ProjectionReader:
    """Reads for reports: the live copy, or reporting's log folded up to an instant."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        acquire_timeout_s: float = 10.0,
        replays: AsOfReplays | None = None,
        rate_limit: AsOfRateLimit | None = None,
    ) -> None:
        self.pool = pool
        self.acquire_timeout_s = acquire_timeout_s
        self.replays = replays or AsOfReplays(concurrency=1, cache_size=0)
        self.rate_limit = rate_limit

    def admit(self, subject: str, as_of: datetime | None) -> None:
        """Raises ``AsOfRateLimited`` when the subject is over its rate of as-of answers."""
        if as_of is not None and self.rate_limit is not None:
            self.rate_limit.check(subject)

    async def snapshot(self, as_of: datetime | None) -> Snapshot:
        if as_of is not None:
            model = await self.model_as_of(as_of)
            return Snapshot(model.documents, as_of, model)
        async with self.pool.acquire(timeout=self.acquire_timeout_s) as connection:
            rows = await connection.fetch("SELECT kind, doc FROM documents")
        model = Model()
        for row in rows:
            model.put(read_document(row["kind"], row["doc"]))
        return Snapshot(model.documents, datetime.now(UTC))

    async def model_as_of(self, as_of: datetime) -> Model:
        """The same projection code over reporting's log, up to events recorded at ``as_of``."""
        async with self.pool.acquire(timeout=self.acquire_timeout_s) as connection:
            head = await connection.fetch(LOG_HEAD, list(SOURCES))
        return await self.replays.model(
            as_of,
            tuple((row["source"], row["last"] or 0) for row in head),
            lambda: self._envelopes_until(as_of),
        )

    async def _envelopes_until(self, as_of: datetime) -> list[str]:
        async with self.pool.acquire(timeout=self.acquire_timeout_s) as connection:
            # Each source in position order; how sources interleave does not matter.
            rows = await connection.fetch(
                "SELECT envelope::text AS envelope FROM event_log WHERE recorded_at <= $1 "
                "ORDER BY source, position",
                as_of,
            )
        return [row["envelope"] for row in rows]

    async def timeline_of(self, entity_id: str, as_of: datetime | None) -> list[TimelineEntry]:
        if as_of is not None:
            return (await self.model_as_of(as_of)).timeline_of(entity_id)
        async with self.pool.acquire(timeout=self.acquire_timeout_s) as connection:
            rows = await connection.fetch(
                "SELECT entry FROM timeline WHERE entity_id = $1 "
                "ORDER BY recorded_at, source, position",
                entity_id,
            )
        return [TimelineEntry.model_validate(row["entry"]) for row in rows]

    async def recent_events(self, snap: Snapshot, limit: int) -> list[TimelineEntry]:
        if snap.model is not None:
            return snap.model.recent_events(limit)
        async with self.pool.acquire(timeout=self.acquire_timeout_s) as connection:
            rows = await connection.fetch(
                "SELECT entry FROM timeline WHERE is_primary "
                "ORDER BY recorded_at DESC, source DESC, position DESC LIMIT $1",
                limit,
            )
        return [TimelineEntry.model_validate(row["entry"]) for row in rows]

    async def status(self) -> ProjectionStatus:
        async with self.pool.acquire(timeout=self.acquire_timeout_s) as connection:
            return await projection_status(connection)


@dataclass(frozen=True)
class SourceStatus:
    source: str
    last_position: int
    events_applied: int


@dataclass(frozen=True)
class ProjectionStatus:
    version: int | None
    code_version: int
    built_at: datetime | None
    sources: tuple[SourceStatus, ...]
    events_logged: int


async def projection_status(connection: DbConnection) -> ProjectionStatus:
    version_row = await connection.fetchrow(
        "SELECT version, built_at FROM projection_version ORDER BY built_at DESC LIMIT 1"
    )
    rows = await connection.fetch(
        "SELECT source, last_position, events_applied FROM consumer_sources "
        "WHERE consumer = $1 ORDER BY source",
        CONSUMER,
    )
    logged = await connection.fetchval("SELECT count(*) FROM event_log")
    return ProjectionStatus(
        version=None if version_row is None else version_row["version"],
        code_version=PROJECTION_VERSION,
        built_at=None if version_row is None else version_row["built_at"],
        sources=tuple(
            SourceStatus(row["source"], row["last_position"], row["events_applied"]) for row in rows
        ),
        events_logged=logged,
    )
