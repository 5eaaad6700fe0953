"""Rebuilding the projection from offset 0 of the topics, beside the live copy, without downtime.

1. A fresh copy is made in schema ``rebuild``; every topic is read from offset 0 up to the end
   it has now, folded in memory by the pure projection code, and the log and timeline rows
   are written in bulk (COPY) as it goes.
2. The swap lock is taken exclusively: live handlers take it shared, so the live consumer
   pauses (queries go on). The reader catches up to the topics' current end.
3. In one transaction: the documents still in memory, the checkpoints and the projection
   version are written, ``live`` becomes ``retired`` and ``rebuild`` becomes ``live``. The
   lock is released, the live consumer resumes on the new copy (its checkpoints make what the
   rebuild applied duplicates), and ``retired`` is dropped.

Memory does not grow with the log: documents not touched for a while are moved to the copy's
table (a ``DocumentCache`` of bounded size) and moved back when an event needs them; a
document is always in exactly one of the two places.

A rebuild only reads topics and writes its own copy: it never publishes, notifies or calls
anything, so replaying history has no side effects.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import asyncpg

from ipmg_reporting.projections import (
    CONSUMER,
    DOCUMENT_MODELS,
    PROJECTION_VERSION,
    SOURCES,
    Change,
    Document,
    DocumentKey,
    Model,
    Skipped,
    decode,
    document_key,
    key_of,
)
from ipmg_reporting.schema import (
    REBUILD,
    REBUILD_LOCK_KEY,
    RETIRED,
    SERVICE,
    SWAP_LOCK_KEY,
    create_copy,
    create_secondary_indexes,
    stored_version,
    swap_in_rebuilt_copy,
)
from ipmg_reporting.topic_reader import Record, TopicReader
from ipmg_shared.envelope import Envelope
from ipmg_shared.events import DomainEvent
from ipmg_shared.logging import get_logger
from ipmg_shared.settings import Settings

if TYPE_CHECKING:
    from aiokafka import TopicPartition

log = get_logger("ipmg.reporting.rebuild")
CATCH_UP_TIMEOUT_S = 120.0


class RebuildInProgress(Exception):
    """Another rebuild holds the rebuild lock."""


class RebuildProgress(Protocol):
    def phase(self, name: str, total: int) -> None:
        """A phase starts: ``total`` events to read in it."""

    def advance(self, events: int, remaining: int) -> None:
        """``events`` more were read; ``remaining`` is the lag still to read."""


@dataclass
class RebuildReport:
    events_read: int = 0
    events_applied: int = 0
    caught_up: int = 0  # read while the live consumer was paused
    skipped: dict[str, int] = field(default_factory=dict)
    documents: int = 0
    seconds: float = 0.0
    paused_seconds: float = 0.0
    documents_in_memory_at_most: int = 0
    version: int = PROJECTION_VERSION

    @property
    def events_per_second(self) -> float:
        return self.events_read / self.seconds if self.seconds > 0 else 0.0


async def rebuild_projection(
    settings: Settings,
    *,
    service: str = SERVICE,
    progress: RebuildProgress | None = None,
    batch_size: int = 2000,
    documents_in_memory: int = 10_000,
) -> RebuildReport:
    """Build a fresh copy from offset 0 of every source topic, then swap it in atomically."""
    started = time.monotonic()
    report = RebuildReport()
    # A plain connection: jsonb travels as text, which COPY needs (no json codec here).
    connection = await asyncpg.connect(
        settings.service_dsn(service),
        timeout=settings.pool_acquire_timeout_s,
        command_timeout=settings.db_command_timeout_s,
        statement_cache_size=0,
    )
    try:
        if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", REBUILD_LOCK_KEY):
            raise RebuildInProgress("another rebuild of the projection is running")
        await connection.execute(f"DROP SCHEMA IF EXISTS {RETIRED} CASCADE")
        await create_copy(connection, REBUILD, indexes=False)
        writer = CopyWriter(connection)
        model = Model(keep_timeline=False)
        fold = Fold(
            model,
            writer,
            DocumentCache(model, writer, documents_in_memory),
            {settings.topics.events(source): source for source in SOURCES},
            report,
            progress,
        )
        with collecting_rarely():
            async with TopicReader(settings, list(fold.topic_sources)) as reader:
                ends = await reader.end_offsets()
                if progress is not None:
                    progress.phase("rebuilding", reader.remaining(ends))
                await fold.read(reader, ends, batch_size)
                await create_secondary_indexes(connection, REBUILD)
                log.info("rebuild_folded", events=report.events_read, skipped=dict(model.skipped))

                await connection.execute("SELECT pg_advisory_lock($1)", SWAP_LOCK_KEY)
                paused = time.monotonic()
                try:
                    # The live consumer waits for this phase: bounded, whatever Kafka does.
                    async with asyncio.timeout(CATCH_UP_TIMEOUT_S):
                        await _catch_up_and_swap(reader, fold, batch_size)
                finally:
                    await connection.execute("SELECT pg_advisory_unlock($1)", SWAP_LOCK_KEY)
                    report.paused_seconds = time.monotonic() - paused
        await connection.execute(f"DROP SCHEMA IF EXISTS {RETIRED} CASCADE")
        report.events_applied = model.events_applied
        report.skipped = dict(model.skipped)
        report.documents = fold.documents.count
        report.documents_in_memory_at_most = fold.documents.peak
    finally:
        await connection.close()  # also releases the rebuild lock
    report.seconds = time.monotonic() - started
    log.info(
        "rebuild_swapped",
        events=report.events_read,
        applied=report.events_applied,
        caught_up=report.caught_up,
        skipped=report.skipped,
        seconds=round(report.seconds, 3),
        paused_seconds=round(report.paused_seconds, 3),
    )
    return report


@contextlib.contextmanager
def collecting_rarely() -> Iterator[None]:
    """The cyclic garbage collector held back while a rebuild folds.

    Folding allocates millions of short-lived objects, none in a cycle, while thousands of
    cached documents stay alive. At the default thresholds the collector runs every 700
    allocations and keeps walking those documents: a quarter of the rebuild's CPU. Reference
    counting still frees each object when it is dropped; the thresholds come back at the end.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


async def _catch_up_and_swap(reader: TopicReader, fold: Fold, batch_size: int) -> None:
    """Read to the topics' ends of this moment, then swap the copies in one transaction."""
    ends = await reader.end_offsets()
    if fold.progress is not None:
        fold.progress.phase("catching up", reader.remaining(ends))
    before = fold.report.events_read
    await fold.read(reader, ends, batch_size)
    fold.report.caught_up = fold.report.events_read - before
    writer = fold.writer
    async with writer.connection.transaction():
        await fold.documents.store_all()
        await writer.insert_checkpoints(fold.model)
        await writer.connection.execute(
            f"INSERT INTO {REBUILD}.projection_version (version) VALUES ($1)", PROJECTION_VERSION
        )
        await swap_in_rebuilt_copy(writer.connection)


@dataclass
class Fold:
    """Records folded into the model; their log and timeline rows written as it goes."""

    model: Model
    writer: CopyWriter
    documents: DocumentCache
    topic_sources: dict[str, str]
    report: RebuildReport
    progress: RebuildProgress | None

    async def read(
        self, reader: TopicReader, ends: dict[TopicPartition, int], batch_size: int
    ) -> None:
        """Apply every record up to ``ends``.

        A batch's rows are written while the next batch is read and folded: PostgreSQL stores
        one while this process works on the other (one write in flight, so memory stays
        bounded).
        """
        writing: asyncio.Task[None] | None = None  # one statement at a time on the connection
        try:
            async for batch in reader.batches(ends, batch_size):
                decoded = [_decode_record(self.model, r, self.topic_sources) for r in batch]
                events = [outcome for outcome in decoded if not isinstance(outcome, Skipped)]
                keys = [key for _, event in events if (key := document_key(event)) is not None]
                if self.documents.must_load(keys) and writing is not None:
                    await writing
                await self.documents.load(keys)
                applied: list[tuple[Envelope, Change]] = []
                for envelope, event in events:
                    change = self.model.apply(envelope, event)
                    if not isinstance(change, Skipped):
                        applied.append((envelope, change))
                if writing is not None:
                    await writing
                self.documents.touched(keys)
                await self.documents.keep_bounded()
                writing = asyncio.create_task(self.writer.insert_log_and_timeline(applied))
                self.report.events_read += len(batch)
                if self.progress is not None:
                    self.progress.advance(len(batch), reader.remaining(ends))
            if writing is not None:
                await writing
        finally:
            if writing is not None and not writing.done():
                writing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writing


class DocumentCache:
    """The model's documents, at most ``limit`` in memory; the others in the copy's table.

    The least recently touched are moved out when there are too many, and moved back (read
    and deleted in one statement) before an event of theirs is applied.
    """

    def __init__(self, model: Model, writer: CopyWriter, limit: int) -> None:
        self.model = model
        self.writer = writer
        self.limit = limit
        self.peak = 0
        self._recent: dict[DocumentKey, None] = {}  # in memory, least recently touched first
        self._stored: set[DocumentKey] = set()

    @property
    def count(self) -> int:
        return len(self._recent) + len(self._stored)

    def must_load(self, keys: Iterable[DocumentKey]) -> bool:
        return any(key in self._stored for key in keys)

    async def load(self, keys: Iterable[DocumentKey]) -> None:
        """Bring these documents into memory, where they are not already."""
        wanted = sorted({key for key in keys if key in self._stored}, key=_sort_key)
        if not wanted:
            return
        rows = await self.writer.take_documents(wanted)
        for row in rows:
            self.model.put(DOCUMENT_MODELS[row["kind"]].model_validate_json(row["doc"]))
        self._stored.difference_update(wanted)

    def touched(self, keys: Iterable[DocumentKey]) -> None:
        for key in keys:
            if self.model.document(key) is not None:
                self._recent.pop(key, None)
                self._recent[key] = None
        self.peak = max(self.peak, len(self._recent))

    async def keep_bounded(self) -> None:
        # Moved out in bulk, down to nine tenths of the limit, not one by one every batch.
        if len(self._recent) <= self.limit:
            return
        leaving = list(itertools.islice(self._recent, len(self._recent) - self.limit * 9 // 10))
        await self._store(leaving)

    async def store_all(self) -> None:
        await self._store(list(self._recent))

    async def _store(self, keys: list[DocumentKey]) -> None:
        for key in keys:
            del self._recent[key]
        await self.writer.insert_documents([self.model.take(key) for key in keys])
        self._stored.update(keys)


def _sort_key(key: DocumentKey) -> tuple[str, str]:
    return (key.kind, key.entity_id)


def _decode_record(
    model: Model, record: Record, topic_sources: dict[str, str]
) -> tuple[Envelope, DomainEvent] | Skipped:
    """As the live runner would: the same decoding, source check and stream-order rules."""
    decoded = decode(record.value or b"")
    if isinstance(decoded, Skipped):
        model.skipped[decoded.reason] += 1
        return decoded
    envelope, event = decoded
    header_source = dict(record.headers or ()).get("source")
    if envelope.source != topic_sources.get(record.topic) or (
        header_source is not None and header_source.decode(errors="replace") != envelope.source
    ):
        model.skipped["forged_source"] += 1
        return Skipped("forged_source", f"{envelope.source} does not publish on {record.topic}")
    return envelope, event


class CopyWriter:
    """Bulk writes into the ``rebuild`` copy, with COPY."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def insert_log_and_timeline(self, applied: list[tuple[Envelope, Change]]) -> None:
        if not applied:
            return
        await self.connection.copy_records_to_table(
            "event_log",
            schema_name=REBUILD,
            columns=["source", "position", "event_id", "recorded_at", "envelope"],
            records=[
                (e.source, e.position, e.event_id, e.recorded_at, e.model_dump_json())
                for e, _ in applied
            ],
        )
        await self.connection.copy_records_to_table(
            "timeline",
            schema_name=REBUILD,
            columns=["entity_id", "source", "position", "recorded_at", "is_primary", "entry"],
            records=[
                (
                    entry.entity_id,
                    entry.source,
                    entry.position,
                    envelope.recorded_at,
                    entry.primary,
                    entry.model_dump_json(),
                )
                for envelope, change in applied
                for entry in change.timeline
            ],
        )

    async def insert_documents(self, documents: Iterable[Document]) -> None:
        records = []
        for document in documents:
            key = key_of(document)
            records.append((key.kind, key.entity_id, document.version, document.model_dump_json()))
        if records:
            await self.connection.copy_records_to_table(
                "documents",
                schema_name=REBUILD,
                columns=["kind", "entity_id", "version", "doc"],
                records=records,
            )

    async def take_documents(self, keys: list[DocumentKey]) -> list[asyncpg.Record]:
        """These documents' rows, deleted from the copy as they are read."""
        rows: list[asyncpg.Record] = await self.connection.fetch(
            f"DELETE FROM {REBUILD}.documents WHERE (kind, entity_id) IN "
            "(SELECT * FROM unnest($1::text[], $2::text[])) RETURNING kind, doc::text AS doc",
            [key.kind for key in keys],
            [key.entity_id for key in keys],
        )
        return rows

    async def insert_checkpoints(self, model: Model) -> None:
        await self.connection.copy_records_to_table(
            "consumer_streams",
            schema_name=REBUILD,
            columns=["consumer", "stream_id", "last_version"],
            records=[(CONSUMER, stream, version) for stream, version in model.streams.items()],
        )
        await self.connection.copy_records_to_table(
            "consumer_sources",
            schema_name=REBUILD,
            columns=["consumer", "source", "last_position", "events_applied"],
            records=[
                (CONSUMER, source, progress.last_position, progress.events_applied)
                for source, progress in model.sources.items()
            ],
        )


class LoggedProgress:
    """Progress as log lines, at most one every ``every_s`` seconds (for the service)."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self.name = ""
        self.read = 0
        self._last = time.monotonic()

    def phase(self, name: str, total: int) -> None:
        self.name = name
        log.info("rebuild_phase", phase=name, events=total)

    def advance(self, events: int, remaining: int) -> None:
        self.read += events
        if time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            log.info("rebuild_progress", phase=self.name, events=self.read, remaining=remaining)


async def keep_projection_current(
    settings: Settings, pool: asyncpg.Pool, service: str = SERVICE
) -> None:
    """At service start: rebuild beside the live copy when its version is not this code's.

    Runs in the background while the service serves; retried with backoff (Kafka or the
    database may be down at start), and waits out a rebuild started elsewhere.
    """
    backoff = 1.0
    while True:
        try:
            async with pool.acquire(timeout=settings.pool_acquire_timeout_s) as connection:
                version = await stored_version(connection)
            if version == PROJECTION_VERSION:
                return
            log.warning("projection_version_differs", stored=version, code=PROJECTION_VERSION)
            await rebuild_projection(settings, service=service, progress=LoggedProgress())
            return
        except RebuildInProgress:
            log.info("rebuild_running_elsewhere")
        except Exception as error:
            log.warning("projection_check_failed", error=repr(error), retry_in=backoff)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 30.0)
