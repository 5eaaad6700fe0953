"""Rebuilding the projection from offset 0 of the topics, beside the live copy, without downtime.

1. A fresh copy is made in schema ``rebuild``; every topic is read from offset 0 up to the end
   it has now, folded in memory by the pure projection code, and the log and timeline rows
   are written in bulk (COPY) as it goes; then every document.
2. The swap lock is taken exclusively: live handlers take it shared, so the live consumer
   pauses (queries go on). The reader catches up to the topics' current end.
3. In one transaction: the documents changed by the catch-up, the checkpoints and the
   projection version are written, ``live`` becomes ``retired`` and ``rebuild`` becomes
   ``live``. The lock is released, the live consumer resumes on the new copy (its checkpoints
   make what the rebuild applied duplicates), and ``retired`` is dropped.

A rebuild only reads topics and writes its own copy: it never publishes, notifies or calls
anything, so replaying history has no side effects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import asyncpg

from ipmg_reporting.projections import (
    CONSUMER,
    PROJECTION_VERSION,
    SOURCES,
    Change,
    Document,
    DocumentKey,
    MeetingDoc,
    Model,
    Skipped,
    decode,
)
from ipmg_reporting.schema import (
    REBUILD,
    REBUILD_LOCK_KEY,
    RETIRED,
    SERVICE,
    SWAP_LOCK_KEY,
    create_copy,
    stored_version,
    swap_in_rebuilt_copy,
)
from ipmg_reporting.topic_reader import Record, TopicReader
from ipmg_shared.envelope import Envelope
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
        await create_copy(connection, REBUILD)
        writer = CopyWriter(connection)
        model = Model(keep_timeline=False)
        topic_sources = {settings.topics.events(source): source for source in SOURCES}
        async with TopicReader(settings, list(topic_sources)) as reader:
            ends = await reader.end_offsets()
            if progress is not None:
                progress.phase("rebuilding", reader.remaining(ends))
            await _fold(reader, ends, model, writer, topic_sources, report, progress, batch_size)
            await writer.insert_documents(_all_documents(model))
            log.info("rebuild_folded", events=report.events_read, skipped=dict(model.skipped))

            await connection.execute("SELECT pg_advisory_lock($1)", SWAP_LOCK_KEY)
            paused = time.monotonic()
            try:
                # The live consumer waits for this phase: bounded, whatever Kafka does.
                async with asyncio.timeout(CATCH_UP_TIMEOUT_S):
                    await _catch_up_and_swap(
                        reader, model, writer, topic_sources, report, progress, batch_size
                    )
            finally:
                await connection.execute("SELECT pg_advisory_unlock($1)", SWAP_LOCK_KEY)
                report.paused_seconds = time.monotonic() - paused
        await connection.execute(f"DROP SCHEMA IF EXISTS {RETIRED} CASCADE")
        report.events_applied = model.events_applied
        report.skipped = dict(model.skipped)
        report.documents = len(model.meetings) + len(model.resolutions)
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


async def _catch_up_and_swap(
    reader: TopicReader,
    model: Model,
    writer: CopyWriter,
    topic_sources: dict[str, str],
    report: RebuildReport,
    progress: RebuildProgress | None,
    batch_size: int,
) -> None:
    """Read to the topics' ends of this moment, then swap the copies in one transaction."""
    ends = await reader.end_offsets()
    if progress is not None:
        progress.phase("catching up", reader.remaining(ends))
    before = report.events_read
    changed = await _fold(reader, ends, model, writer, topic_sources, report, progress, batch_size)
    report.caught_up = report.events_read - before
    async with writer.connection.transaction():
        await writer.replace_documents(changed, model)
        await writer.insert_checkpoints(model)
        await writer.connection.execute(
            f"INSERT INTO {REBUILD}.projection_version (version) VALUES ($1)", PROJECTION_VERSION
        )
        await swap_in_rebuilt_copy(writer.connection)


async def _fold(
    reader: TopicReader,
    ends: dict[TopicPartition, int],
    model: Model,
    writer: CopyWriter,
    topic_sources: dict[str, str],
    report: RebuildReport,
    progress: RebuildProgress | None,
    batch_size: int,
) -> set[DocumentKey]:
    """Apply every record up to ``ends``; the log and timeline rows are written per batch."""
    changed: set[DocumentKey] = set()
    async for batch in reader.batches(ends, batch_size):
        applied: list[tuple[Envelope, Change]] = []
        for record in batch:
            outcome = _apply_record(model, record, topic_sources)
            if isinstance(outcome, tuple):
                applied.append(outcome)
                if outcome[1].key is not None:
                    changed.add(outcome[1].key)
        await writer.insert_log_and_timeline(applied)
        report.events_read += len(batch)
        if progress is not None:
            progress.advance(len(batch), reader.remaining(ends))
    return changed


def _apply_record(
    model: Model, record: Record, topic_sources: dict[str, str]
) -> tuple[Envelope, Change] | Skipped:
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
    outcome = model.apply(envelope, event)
    return outcome if isinstance(outcome, Skipped) else (envelope, outcome)


def _all_documents(model: Model) -> Iterable[Document]:
    yield from model.meetings.values()
    yield from model.resolutions.values()


def _document_key(document: Document) -> DocumentKey:
    if isinstance(document, MeetingDoc):
        return DocumentKey("meeting", document.meeting_id)
    return DocumentKey("resolution", document.resolution_id)


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
            key = _document_key(document)
            records.append((key.kind, key.entity_id, document.version, document.model_dump_json()))
        if records:
            await self.connection.copy_records_to_table(
                "documents",
                schema_name=REBUILD,
                columns=["kind", "entity_id", "version", "doc"],
                records=records,
            )

    async def replace_documents(self, keys: set[DocumentKey], model: Model) -> None:
        if not keys:
            return
        ordered = sorted(keys, key=lambda key: (key.kind, key.entity_id))
        await self.connection.execute(
            f"DELETE FROM {REBUILD}.documents WHERE (kind, entity_id) IN "
            "(SELECT * FROM unnest($1::text[], $2::text[]))",
            [key.kind for key in ordered],
            [key.entity_id for key in ordered],
        )
        documents = [model.document(key) for key in ordered]
        await self.insert_documents(document for document in documents if document is not None)

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
