"""Rebuilding the projection from offset 0 of the topics, beside the live copy, without downtime.

1. A fresh copy is made in schema ``rebuild``; every topic is read from offset 0 up to the end
   it has now, folded in memory by the pure projection code, and the log and timeline rows
   are written in bulk (COPY) as it goes. The partitions are split in shares folded side by
   side by worker processes (one per CPU). A stream's events are all on one partition, under
   its stream id as the record's key, and an event changes only its stream's document, so
   shares never meet: a partition too big for one share is split between all of them by
   stream. Each share ends by storing its documents and its streams' checkpoints in the
   copy.
2. The swap lock is taken exclusively: live handlers take it shared, so the live consumer
   pauses (queries go on). This process reads on from where the shares ended to the topics'
   current end, moving the documents it needs back into memory.
3. In one transaction: the documents still in memory, the checkpoints and the projection
   version are written, ``live`` becomes ``retired`` and ``rebuild`` becomes ``live``. The
   lock is released, the live consumer resumes on the new copy (its checkpoints make what the
   rebuild applied duplicates), and ``retired`` is dropped.

A stream's events are all on one partition until partitions are added: then its later events
go to another one, which may be read first. An event that comes before its stream's previous
one is parked in the copy's ``parked_events`` table, and the parked events are applied in
stream order once the shares are folded (and again after the catch-up); only a version that
never came is skipped as a gap.

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
import json
import math
import os
import pickle
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import asyncpg
from aiokafka import TopicPartition

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
    SourceProgress,
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
    create_indexes,
    stored_version,
    swap_in_rebuilt_copy,
)
from ipmg_reporting.topic_reader import Record, TopicReader
from ipmg_shared.consumer import Received
from ipmg_shared.logging import get_logger
from ipmg_shared.settings import Settings

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
    partitions_split: int = 0  # folded by several workers, each taking some of its streams
    parked: int = 0  # read before their stream's previous event, applied after it
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
    workers: int | None = None,
) -> RebuildReport:
    """Build a fresh copy from offset 0 of every source topic, then swap it in atomically.

    ``workers``: processes folding shares of the partitions side by side (None: the
    settings' ``rebuild_workers``, whose 0 means one per usable CPU, fewer for a short log).
    With one, the fold runs in this process.
    """
    started = time.monotonic()
    report = RebuildReport()
    topic_sources = sources_by_topic(settings)
    connection = await _connect(settings, service)
    try:
        if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", REBUILD_LOCK_KEY):
            raise RebuildInProgress("another rebuild of the projection is running")
        await connection.execute(f"DROP SCHEMA IF EXISTS {RETIRED} CASCADE")
        deferred_indexes = await create_copy(connection, REBUILD, indexes=False)
        await connection.execute(CREATE_PARKED)
        async with TopicReader(settings, list(topic_sources)) as reader:
            starts = reader.positions
            ends = await reader.end_offsets()
        lags = {tp: max(ends[tp] - starts[tp], 0) for tp in ends}
        if progress is not None:
            progress.phase("rebuilding", sum(lags.values()))
        shares = split_partitions(
            lags, workers or settings.rebuild_workers or workers_for(lags, usable_cpus())
        )
        # Of each share, the partitions it folds only some streams of.
        parts = [{tp: part for tp, part in share.items() if part.count > 1} for share in shares]
        report.partitions_split = len({tp for share_parts in parts for tp in share_parts})
        folded = await fold_shares(
            [
                ShareTask(
                    settings,
                    service,
                    {tp: (starts[tp], ends[tp]) for tp in share},
                    batch_size,
                    max(1, documents_in_memory // len(shares)),
                    share_parts,
                )
                for share, share_parts in zip(shares, parts, strict=True)
            ],
            progress,
        )

        # The shares' documents and stream checkpoints are in the copy's tables: the catch-up
        # goes on from there, in this process.
        writer = CopyWriter(connection)
        model = Model(keep_timeline=False)
        documents = DocumentCache(model, writer, documents_in_memory)
        for share_folded in folded:
            share_folded.add_to(model, report)
        await writer.restore(model, documents)
        fold = Fold(model, writer, documents, topic_sources, report, progress)
        streams_before = dict(model.streams)
        await fold.apply_parked(batch_size)
        await writer.upsert_streams(moved_streams(streams_before, model))
        await _create_indexes_side_by_side(settings, service, connection, deferred_indexes)
        log.info(
            "rebuild_folded",
            events=report.events_read,
            parked=report.parked,
            workers=len(shares),
            partitions_split=report.partitions_split,
            skipped=model.skipped,
        )

        async with TopicReader(settings, list(topic_sources), starting_at=ends) as reader:
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
        report.documents = documents.count
        report.documents_in_memory_at_most = max(
            sum(share_folded.documents_in_memory_at_most for share_folded in folded),
            documents.peak,
        )
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


def sources_by_topic(settings: Settings) -> dict[str, str]:
    """Each topic a rebuild reads, and the source that alone may publish on it."""
    return {settings.topics.events(source): source for source in SOURCES}


async def _connect(settings: Settings, service: str) -> asyncpg.Connection:
    # A plain connection: json travels as text, which COPY needs (no json codec here).
    return await asyncpg.connect(
        settings.service_dsn(service),
        timeout=settings.pool_acquire_timeout_s,
        command_timeout=settings.db_command_timeout_s,
        statement_cache_size=0,
        # The copy's batches commit without waiting for the disk: until the swap nothing reads
        # them, a crash before it means a new rebuild anyway, and the swap's own commit waits
        # (SWAP_DURABLY), which makes everything written before it durable too.
        server_settings={"synchronous_commit": "off"},
    )


SWAP_DURABLY = "SET LOCAL synchronous_commit = on"

# Events read before their stream's previous one (on another partition), until it is applied.
# Unlogged: until the swap nothing reads the copy, and a crash means a new rebuild anyway.
PARKED = f"{REBUILD}.parked_events"
CREATE_PARKED = (
    f"CREATE UNLOGGED TABLE {PARKED} "
    "(stream_id text NOT NULL, stream_version integer NOT NULL, envelope text NOT NULL)"
)


# --- the fold, in shares of the partitions ------------------------------------------------

# A worker process costs about a second of CPU to start: a short log gets fewer of them.
EVENTS_PER_WORKER_AT_LEAST = 25_000

Share = dict[TopicPartition, tuple[int, int]]  # partition: (first offset, end offset)


def workers_for(lags: Mapping[TopicPartition, int], cpus: int) -> int:
    """One per CPU, at most one per partition with records, and fewer for a short log."""
    partitions = sum(1 for lag in lags.values() if lag > 0)
    enough = sum(lags.values()) // EVENTS_PER_WORKER_AT_LEAST
    return max(1, min(cpus, partitions, enough))


def usable_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The CPUs this process may run on, and no more than its cgroup's quota allows.

    A container limited to one CPU on an eight-core host has an affinity of eight: its
    quota (cgroup v2's ``cpu.max``: "<quota> <period>", or "max") is the true bound.
    """
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()
    except (OSError, ValueError):
        return cpus
    if quota == "max":
        return cpus
    return max(1, min(cpus, math.ceil(int(quota) / int(period))))


@dataclass(frozen=True)
class StreamPart:
    """The streams of a partition one share folds: those whose key's CRC-32 modulo ``count``
    is in ``indexes`` (CRC-32: the same in every process, unlike ``hash``)."""

    indexes: frozenset[int] = frozenset({0})
    count: int = 1  # 1: the whole partition

    def holds(self, key: bytes | None) -> bool:
        return self.count == 1 or zlib.crc32(key or b"") % self.count in self.indexes


WHOLE = StreamPart()
# A share may take a whole partition that leaves it this much above an even share; past that,
# the partition is split by stream, in this many parts per share (finer parts even the
# shares out better; each share that takes one reads the whole partition).
UNEVEN_AT_MOST = 0.05
PARTS_PER_SHARE = 4


def split_partitions(
    lags: Mapping[TopicPartition, int], workers: int
) -> list[dict[TopicPartition, StreamPart]]:
    """The partitions in ``workers`` shares of about equal records, none empty.

    Largest first, each to the share with the fewest records so far, whole if that share then
    holds no more than about an even share of the records. Otherwise the partition's streams
    are cut in parts, each part to the share with the fewest records at that moment. So three
    partitions of a busy topic do not leave one of two workers with two of them.
    """
    records = [0.0] * max(1, workers)
    count = len(records) * PARTS_PER_SHARE
    # Each share's partitions and the parts it takes of them (none: the whole partition).
    taken: list[dict[TopicPartition, set[int]]] = [{} for _ in records]
    even = sum(lags.values()) / len(records) * (1 + UNEVEN_AT_MOST)
    for tp in sorted(lags, key=lambda tp: (-lags[tp], tp.topic, tp.partition)):
        lightest = records.index(min(records))
        if len(records) == 1 or records[lightest] + lags[tp] <= even:
            taken[lightest][tp] = set()
            records[lightest] += lags[tp]
            continue
        for index in range(count):
            lightest = records.index(min(records))
            taken[lightest].setdefault(tp, set()).add(index)
            records[lightest] += lags[tp] / count
    shares = [
        {
            tp: StreamPart(frozenset(parts), count) if 0 < len(parts) < count else WHOLE
            for tp, parts in share.items()
        }
        for share in taken
    ]
    return [share for share in shares if share] or [{}]


@dataclass(frozen=True)
class ShareTask:
    """What a worker folds: its partitions from offset to offset, into the ``rebuild`` copy;
    of those in ``parts``, only its part of the streams."""

    settings: Settings
    service: str
    share: Share
    batch_size: int
    documents_in_memory: int
    parts: dict[TopicPartition, StreamPart] = field(default_factory=dict)


@dataclass
class FoldedShare:
    """What a worker reports: its documents and stream checkpoints are in the copy's tables."""

    events_read: int
    sources: dict[str, SourceProgress]
    skipped: dict[str, int]
    documents_in_memory_at_most: int
    parked: int = 0

    def add_to(self, model: Model, report: RebuildReport) -> None:
        report.events_read += self.events_read
        report.parked += self.parked
        model.skipped.update(self.skipped)
        for source, progress in self.sources.items():
            merged = model.sources.setdefault(source, SourceProgress())
            merged.last_position = max(merged.last_position, progress.last_position)
            merged.events_applied += progress.events_applied

    def to_json(self) -> dict[str, Any]:
        return {
            "events_read": self.events_read,
            "sources": {name: vars(progress) for name, progress in self.sources.items()},
            "skipped": self.skipped,
            "documents_in_memory_at_most": self.documents_in_memory_at_most,
            "parked": self.parked,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FoldedShare:
        return cls(
            data["events_read"],
            {name: SourceProgress(**fields) for name, fields in data["sources"].items()},
            data["skipped"],
            data["documents_in_memory_at_most"],
            data["parked"],
        )


async def fold_share(task: ShareTask, progress: RebuildProgress | None) -> FoldedShare:
    """Fold one share of the partitions; store its documents and stream checkpoints."""
    settings = task.settings
    connection = await _connect(settings, task.service)
    try:
        writer = CopyWriter(connection)
        model = Model(keep_timeline=False)
        report = RebuildReport()
        topic_sources = sources_by_topic(settings)
        fold = Fold(
            model,
            writer,
            DocumentCache(model, writer, task.documents_in_memory),
            topic_sources,
            report,
            progress,
            parts=task.parts,
        )
        starts = {tp: start for tp, (start, _) in task.share.items()}
        ends = {tp: end for tp, (_, end) in task.share.items()}
        with collecting_rarely():
            async with TopicReader(settings, list(topic_sources), starting_at=starts) as reader:
                await fold.read(reader, ends, task.batch_size)
        async with connection.transaction():
            await fold.documents.store_all()
            await writer.insert_streams(model.streams)
        return FoldedShare(
            report.events_read,
            model.sources,
            dict(model.skipped),
            fold.documents.peak,
            report.parked,
        )
    finally:
        await connection.close()


async def fold_shares(
    tasks: list[ShareTask], progress: RebuildProgress | None
) -> list[FoldedShare]:
    """One share is folded in this process; several in worker processes side by side."""
    if len(tasks) == 1:
        return [await fold_share(tasks[0], progress)]
    return await _fold_in_workers(tasks, progress)


class RebuildWorkerFailed(Exception):
    """A worker process of a rebuild exited without folding its share."""


async def _fold_in_workers(
    tasks: list[ShareTask], progress: RebuildProgress | None
) -> list[FoldedShare]:
    # A partition split between workers counts once.
    lags = {tp: end - start for task in tasks for tp, (start, end) in task.share.items()}
    total = sum(lags.values())
    read = 0

    def advanced(events: int) -> None:
        nonlocal read
        read += events
        if progress is not None:
            progress.advance(events, total - read)

    workers: list[asyncio.subprocess.Process] = []
    try:
        for _ in tasks:
            workers.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "ipmg_reporting.rebuild_worker",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
            )
        running = zip(workers, tasks, strict=True)
        return list(await asyncio.gather(*(_run_worker(w, t, advanced) for w, t in running)))
    finally:
        # One failed or the rebuild was cancelled: the others stop with it.
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()


async def _run_worker(
    worker: asyncio.subprocess.Process, task: ShareTask, advanced: Callable[[int], None]
) -> FoldedShare:
    assert worker.stdin is not None
    assert worker.stdout is not None
    assert worker.stderr is not None
    errors = asyncio.ensure_future(worker.stderr.read())
    # A worker that fails at once closes its end first: its reason is then on stderr.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        worker.stdin.write(pickle.dumps(task))
        await worker.stdin.drain()
        worker.stdin.close()
    folded: FoldedShare | None = None
    async for line in worker.stdout:
        message = json.loads(line)
        if "read" in message:
            advanced(message["read"])
        else:
            folded = FoldedShare.from_json(message["folded"])
    code = await worker.wait()
    said = (await errors).decode(errors="replace").strip().splitlines()
    if code != 0 or folded is None:
        raise RebuildWorkerFailed(
            f"a rebuild worker exited with {code}: {said[-1] if said else 'no message'}"
        )
    return folded


@contextlib.contextmanager
def collecting_rarely() -> Iterator[None]:
    """The cyclic garbage collector held back while a rebuild folds.

    Folding allocates millions of short-lived objects, none in a cycle, while thousands of
    cached documents stay alive, each a few model instances with a dict and a set apiece. The
    collector runs when the objects allocated and not yet freed pass a threshold, and walks
    every one of them. At the default, 700, that kept it walking the documents: a quarter of
    the rebuild's CPU. At 100,000 it still ran every second early in a fold, 0.1 to 0.35 s
    each time, walking 100,000 to 400,000 young documents' objects. At a million it does not
    run in a fold of 10^6 events, and should cycles pile up, it still collects them every
    million. Reference counting frees each object when it is dropped; the thresholds come
    back at the end.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(1_000_000, 50, 100)
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
    streams_before = dict(fold.model.streams)
    await fold.read(reader, ends, batch_size)
    await fold.apply_parked(batch_size)
    fold.report.caught_up = fold.report.events_read - before
    moved = moved_streams(streams_before, fold.model)
    writer = fold.writer
    async with writer.connection.transaction():
        await writer.connection.execute(SWAP_DURABLY)
        await fold.documents.store_all()
        await writer.upsert_streams(moved)
        await writer.insert_sources(fold.model)
        await writer.connection.execute(
            f"INSERT INTO {REBUILD}.projection_version (version) VALUES ($1)", PROJECTION_VERSION
        )
        await writer.connection.execute(f"DROP TABLE {PARKED}")
        await swap_in_rebuilt_copy(writer.connection)


async def _create_indexes_side_by_side(
    settings: Settings, service: str, connection: asyncpg.Connection, by_table: dict[str, list[str]]
) -> None:
    """Each table's keys and indexes on a connection of its own: while PostgreSQL sorts the
    timeline's rows for its key, the log's are sorted on the other core. Should one fail, the
    others are cancelled before the connections close, and its error is the rebuild's."""
    others = [await _connect(settings, service) for _ in list(by_table)[1:]]
    try:
        async with asyncio.TaskGroup() as group:
            for table_connection, statements in zip(
                [connection, *others], by_table.values(), strict=True
            ):
                group.create_task(create_indexes(table_connection, REBUILD, statements))
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    finally:
        for other in others:
            await other.close()


def moved_streams(before: dict[str, int], model: Model) -> dict[str, int]:
    """The streams whose checkpoints moved since ``before``, and where they are now."""
    return {
        stream: version
        for stream, version in model.streams.items()
        if before.get(stream) != version
    }


@dataclass
class Fold:
    """Records folded into the model; their log and timeline rows written as it goes."""

    model: Model
    writer: CopyWriter
    documents: DocumentCache
    topic_sources: dict[str, str]
    report: RebuildReport
    progress: RebuildProgress | None
    # Partitions split between workers: the part of their streams this share folds.
    parts: Mapping[TopicPartition, StreamPart] = field(default_factory=dict)
    _writing: asyncio.Task[None] | None = field(default=None, init=False)  # one in flight

    async def read(
        self, reader: TopicReader, ends: dict[TopicPartition, int], batch_size: int
    ) -> None:
        """Apply every record up to ``ends``; park those that come before their stream's
        previous event (see ``apply_parked``).

        A batch's rows are written while the next batch is read and folded: PostgreSQL stores
        one while this process works on the other (one write in flight, so memory stays
        bounded).
        """
        try:
            async for records in reader.batches(ends, batch_size):
                batch = self._own(records)
                decoded = [_decode_record(self.model, r, self.topic_sources) for r in batch]
                await self._fold(
                    [outcome for outcome in decoded if not isinstance(outcome, Skipped)],
                    park_early=True,
                )
                self.report.events_read += len(batch)
                if self.progress is not None:
                    self.progress.advance(len(batch), reader.remaining(ends))
            await self._written()
        finally:
            await self._abandon_writing()

    async def apply_parked(self, batch_size: int) -> None:
        """The parked events, in stream order: each stream goes on from where it stands, and
        a version that never came is skipped as a gap, as the live consumer would."""
        connection = self.writer.connection
        try:
            async with connection.transaction():
                parked = await connection.cursor(
                    f"SELECT envelope FROM {PARKED} ORDER BY stream_id, stream_version"
                )
                while rows := await parked.fetch(batch_size):
                    decoded = [(decode(row["envelope"]), row["envelope"]) for row in rows]
                    await self._fold(
                        [
                            Received(*outcome, text.encode())
                            for outcome, text in decoded
                            if not isinstance(outcome, Skipped)
                        ],
                        park_early=False,
                    )
                    await self._written()  # the cursor and the writes share the connection
            await connection.execute(f"TRUNCATE {PARKED}")  # once the cursor is closed
        finally:
            await self._abandon_writing()

    async def _fold(self, events: list[Received], *, park_early: bool) -> None:
        keys = [key for item in events if (key := document_key(item.event)) is not None]
        if self.documents.must_load(keys):
            await self._written()  # one statement at a time on the connection
        await self.documents.load(keys)
        applied: list[tuple[Received, Change]] = []
        early: list[Received] = []
        streams = self.model.streams
        for received in events:
            envelope = received.envelope
            if park_early and envelope.stream_version > streams.get(envelope.stream_id, 0) + 1:
                early.append(received)
                continue
            change = self.model.apply(envelope, received.event)
            if isinstance(change, Change):
                applied.append((received, change))
        await self._written()
        self.documents.touched(keys)
        await self.documents.keep_bounded()
        self.report.parked += len(early)
        self._writing = asyncio.create_task(self.writer.insert_rows(applied, early))

    async def _written(self) -> None:
        if self._writing is not None:
            await self._writing
            self._writing = None

    async def _abandon_writing(self) -> None:
        if self._writing is not None and not self._writing.done():
            self._writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writing
        self._writing = None

    def _own(self, records: list[Record]) -> list[Record]:
        """The records of this share: in a split partition, those of its part of the streams."""
        if not self.parts:
            return records
        parts = self.parts
        return [
            record
            for record in records
            if parts.get(TopicPartition(record.topic, record.partition), WHOLE).holds(record.key)
        ]


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

    def stored_already(self, keys: Iterable[DocumentKey]) -> None:
        """These documents are in the copy's table already (folded by a share)."""
        self._stored.update(keys)

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
) -> Received | Skipped:
    """As the live runner would: the same decoding, source check and stream-order rules."""
    value = record.value or b""
    decoded = decode(value)
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
    return Received(envelope, event, value)


class CopyWriter:
    """Bulk writes into the ``rebuild`` copy, with COPY."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def insert_rows(
        self, applied: list[tuple[Received, Change]], parked: list[Received]
    ) -> None:
        await self.insert_log_and_timeline(applied)
        if parked:
            await self.connection.copy_records_to_table(
                "parked_events",
                schema_name=REBUILD,
                columns=["stream_id", "stream_version", "envelope"],
                records=[
                    (r.envelope.stream_id, r.envelope.stream_version, r.published.decode())
                    for r in parked
                ],
            )

    async def insert_log_and_timeline(self, applied: list[tuple[Received, Change]]) -> None:
        """The log keeps each envelope as it was published, as the live handler does: nothing
        is rendered again (UTF-8 JSON: the envelope was read from it)."""
        if not applied:
            return
        await self.connection.copy_records_to_table(
            "event_log",
            schema_name=REBUILD,
            columns=["source", "position", "event_id", "recorded_at", "envelope"],
            records=[
                (
                    r.envelope.source,
                    r.envelope.position,
                    r.envelope.event_id,
                    r.envelope.recorded_at,
                    r.published.decode(),
                )
                for r, _ in applied
            ],
        )
        await self.connection.copy_records_to_table(
            "timeline",
            schema_name=REBUILD,
            columns=["entity_id", "source", "position", "recorded_at", "is_primary", "entry"],
            records=[
                (
                    entity_id,
                    r.envelope.source,
                    r.envelope.position,
                    r.envelope.recorded_at,
                    own,
                    entry,
                )
                for r, change in applied
                for entity_id, own, entry in change.timeline.rows()
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

    async def insert_streams(self, streams: dict[str, int]) -> None:
        await self.connection.copy_records_to_table(
            "consumer_streams",
            schema_name=REBUILD,
            columns=["consumer", "stream_id", "last_version"],
            records=[(CONSUMER, stream, version) for stream, version in streams.items()],
        )

    async def upsert_streams(self, streams: dict[str, int]) -> None:
        await self.connection.execute(
            f"INSERT INTO {REBUILD}.consumer_streams (consumer, stream_id, last_version) "
            "SELECT $1, * FROM unnest($2::text[], $3::int[]) "
            "ON CONFLICT (consumer, stream_id) DO UPDATE SET last_version = EXCLUDED.last_version",
            CONSUMER,
            list(streams),
            list(streams.values()),
        )

    async def restore(self, model: Model, documents: DocumentCache) -> None:
        """The stream checkpoints and the document keys the shares stored."""
        rows = await self.connection.fetch(
            f"SELECT stream_id, last_version FROM {REBUILD}.consumer_streams"
        )
        model.streams.update((row["stream_id"], row["last_version"]) for row in rows)
        rows = await self.connection.fetch(f"SELECT kind, entity_id FROM {REBUILD}.documents")
        documents.stored_already(DocumentKey(row["kind"], row["entity_id"]) for row in rows)

    async def insert_sources(self, model: Model) -> None:
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
