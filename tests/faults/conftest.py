"""The fault suite: each test runs a steady load of valid commands through the services as
processes, injects one fault, and ends with the same check (see ``check_nothing_lost``).
Figures go to artifacts/reliability.json for docs/reliability.md."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from ipmg_reporting.projections import SOURCES
from ipmg_shared.audit import CHECKPOINT_TYPE
from ipmg_shared.db import create_pool
from ipmg_shared.envelope import Envelope
from ipmg_shared.kafka_reader import read_topic
from ipmg_shared.settings import WRITE_SOURCES, Settings
from ipmg_shared.topics import ensure_topics
from tests.support.load import LoadReport
from tests.support.processes import IPMG, REPO, service_env
from tests.support.reporting import admin_connection, projection_rows, row_differences
from tests.support.waiting import wait_until

FIGURES = REPO / "artifacts" / "reliability.json"


def isolated(settings: Settings, name: str) -> Settings:
    """Databases and topics of one fault test alone (under the session's prefixes)."""
    tag = f"{name}{uuid4().hex[:4]}"
    return settings.model_copy(
        update={
            "database_prefix": f"{settings.database_prefix}{tag}_",
            "topic_prefix": f"{settings.topic_prefix}{tag}.",
        }
    )


async def prepare(settings: Settings) -> None:
    await asyncio.to_thread(
        subprocess.run,
        [str(IPMG), "migrate"],
        env=service_env(settings),
        check=True,
        timeout=120,
        capture_output=True,
    )
    await ensure_topics(settings)


async def check_nothing_lost(settings: Settings, load: LoadReport) -> dict[str, int]:
    """Every accepted command's event is in the store once, on the topic, applied once by the
    resolutions service's consumer and by reporting's live projection, which equals a fresh
    rebuild (`ipmg reporting rebuild`) row for row; `ipmg audit verify` passes.

    Call it while the reporting service runs: its live consumer is waited for first."""
    started = time.monotonic()
    assert load.server_errors == 0, load.statuses
    assert not load.abandoned, load.abandoned
    accepted = set(load.accepted.values())
    stores = {source: await stored_events(settings, source) for source in REPORTED_SOURCES}
    scheduled = Counter(
        event.stream_id.removeprefix("meeting-")
        for event in stores["meetings"]
        if event.type == "MeetingScheduled"
    )
    assert set(scheduled) == accepted, "every accepted command, and nothing else, is stored"
    assert set(scheduled.values()) == {1}, "no command applied twice"

    on_topic: Counter[str] = Counter()  # event id -> records on the topics reporting reads
    for source, events in stores.items():
        published: set[str] = set()
        async for record in read_topic(settings, settings.topics.events(source)):
            envelope = Envelope.from_bytes(record.value or b"")
            on_topic[str(envelope.event_id)] += 1
            published.add(str(envelope.event_id))
        assert published == {event.event_id for event in events}, (
            f"every event of the {source} store reached its topic, and nothing else"
        )

    resolutions = await create_pool(settings.service_dsn("resolutions"), settings, max_size=2)
    try:
        known = await resolutions.fetchval("SELECT count(*) FROM known_meetings")
        applied = await resolutions.fetchval(
            "SELECT coalesce(sum(events_applied), 0) FROM consumer_sources "
            "WHERE consumer = 'resolutions' AND source = 'meetings'"
        )
    finally:
        await resolutions.close()
    assert known == len(accepted)
    reporting = await check_reporting(settings, accepted, stores, on_topic.total())
    # Both consumers have caught up by now: whatever they could not apply would be here.
    dead_letters = [r async for r in read_topic(settings, settings.topics.dead_letter)]
    assert not dead_letters, [dict(r.headers or ()).get("x-ipmg-reason") for r in dead_letters]
    return {
        **load.figures(),
        "events_lost": sum(len(events) for events in stores.values()) - len(on_topic),
        "effects_applied": int(applied),
        "duplicate_effects": int(applied) - int(known),
        "duplicates_on_topic": on_topic.total() - len(on_topic),
        "dead_lettered": len(dead_letters),
        **reporting,
        "end_check_ms": int((time.monotonic() - started) * 1000),
    }


REPORTED_SOURCES = tuple(SOURCES)  # the write sources reporting projects


@dataclass(frozen=True)
class StoredEvent:
    position: int
    event_id: str
    type: str
    stream_id: str
    stream_version: int


async def stored_events(settings: Settings, source: str) -> list[StoredEvent]:
    """Every event of a write service's store, in position order."""
    pool = await create_pool(settings.service_dsn(source), settings, max_size=2)
    try:
        rows = await pool.fetch(
            "SELECT position, event_id::text AS event_id, type, stream_id, stream_version "
            "FROM events ORDER BY position"
        )
    finally:
        await pool.close()
    return [StoredEvent(**dict(row)) for row in rows]


async def reporting_checkpoints(settings: Settings) -> dict[str, tuple[int, int]]:
    """Reporting's live consumer: per source, the last position and the events applied."""
    connection = await admin_connection(settings)
    try:
        rows = await connection.fetch(
            "SELECT source, last_position, events_applied FROM live.consumer_sources "
            "WHERE consumer = 'reporting'"
        )
    finally:
        await connection.close()
    return {row["source"]: (row["last_position"], row["events_applied"]) for row in rows}


async def wait_for_reporting(
    settings: Settings, stores: dict[str, list[StoredEvent]] | None = None
) -> dict[str, tuple[int, int]]:
    """Until reporting's live consumer has applied each store up to its head (every stored
    event is on the topic: checked by ``check_nothing_lost`` and the audit). Returns, per
    source with events, the head position and the number of events: its checkpoint then."""
    if stores is None:
        stores = {source: await stored_events(settings, source) for source in REPORTED_SOURCES}
    expected = {
        source: (events[-1].position, len(events)) for source, events in stores.items() if events
    }

    async def caught_up() -> bool:
        found = await reporting_checkpoints(settings)
        return all(
            found.get(source, (0, 0))[0] >= head and found.get(source, (0, 0))[1] >= count
            for source, (head, count) in expected.items()
        )

    await wait_until(caught_up, timeout=120, interval=0.2)
    return expected


async def check_reporting(
    settings: Settings,
    accepted: set[str],
    stores: dict[str, list[StoredEvent]],
    on_topics: int,
) -> dict[str, int]:
    """The live projection holds every stored event exactly once, then equals a rebuild.

    ``on_topics``: the records on the topics reporting reads; a re-published event (after an
    unknown outcome) is one more record, which the rebuild reads and skips as a duplicate."""
    expected = await wait_for_reporting(settings, stores)
    await asyncio.sleep(0.5)  # an event applied twice would show in the counts now
    live = await projection_rows(settings)

    projected = {
        source: [event for event in events if event.type != CHECKPOINT_TYPE]
        for source, events in stores.items()
    }
    logged = [(row[0], row[1], str(row[2])) for row in live["event_log"]]
    assert logged == [
        (source, event.position, event.event_id)
        for source in sorted(projected)
        for event in projected[source]
    ], "reporting's log holds every stored event exactly once, and nothing else"
    envelopes = [json.loads(row[4]) for row in live["event_log"]]
    scheduled = Counter(
        e["stream_id"].removeprefix("meeting-")
        for e in envelopes
        if e["type"] == "MeetingScheduled"
    )
    assert scheduled == dict.fromkeys(accepted, 1), "each accepted command's event logged once"
    meetings = {row[1]: row[2] for row in live["documents"] if row[0] == "meeting"}
    assert meetings == dict.fromkeys(accepted, 1), "one document per meeting, one event in it"
    primary = Counter(row[0] for row in live["timeline"] if row[4] and row[1] == "meetings")
    assert primary == dict.fromkeys(accepted, 1), "each meeting's timeline shows its event once"
    versions = {e.stream_id: e.stream_version for events in stores.values() for e in events}
    streams = {row[1]: row[2] for row in live["consumer_streams"]}
    assert streams == versions, "every stream applied up to its last stored version"
    checkpoints = {row[1]: (row[2], row[3]) for row in live["consumer_sources"]}
    assert checkpoints == expected, "checkpoints at each store's head, each event applied once"
    applied = sum(count for _, count in checkpoints.values())
    stored = sum(len(events) for events in stores.values())

    # As an operator rebuilds (a fresh copy from offset 0 of the topics, swapped in), while
    # an auditor verifies: both only read the stores and topics, so they may run together.
    (rebuild, rebuild_ms), (audit, _) = await asyncio.gather(
        run_ipmg(settings, "reporting", "rebuild"), run_ipmg(settings, "audit", "verify")
    )
    assert rebuild.returncode == 0, rebuild.stdout + rebuild.stderr
    summary = " ".join(rebuild.stdout.split())  # ends with the summary, even if wrapped
    assert f"{on_topics:,} events read, {applied:,} applied, " in summary, rebuild.stdout
    assert f", {len(live['documents']):,} documents in " in summary, rebuild.stdout
    duplicates = on_topics - stored
    assert summary.endswith(f"; skipped: {duplicates} duplicate" if duplicates else " events"), (
        rebuild.stdout
    )
    rebuilt = await projection_rows(settings)
    differences = row_differences(live, rebuilt)
    assert not differences, differences
    return {
        "reporting_events_applied": applied,
        "reporting_duplicate_effects": applied - stored,
        "reporting_rows_compared": sum(len(rows) for rows in live.values()),
        "rebuild_differences": len(differences),
        "rebuild_ms": rebuild_ms,
        **check_audit(audit, stores),
    }


async def run_ipmg(settings: Settings, *args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """`ipmg …` as an operator runs it against this test's system; its wall time in ms."""
    started = time.monotonic()
    done = await asyncio.to_thread(
        subprocess.run,
        [str(IPMG), *args],
        # Wide enough that no table cell or line is wrapped or cut.
        env={**service_env(settings), "COLUMNS": "200", "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    return done, int((time.monotonic() - started) * 1000)


def verify_during_fault(settings: Settings) -> asyncio.Task[tuple[Any, int]]:
    """`ipmg audit verify` started now, to run while the fault lasts (``verified_during``)."""
    return asyncio.create_task(run_ipmg(settings, "audit", "verify"))


async def verified_during(started: asyncio.Task[tuple[Any, int]]) -> dict[str, int]:
    """Its exit status: 0, or 1 with one line on a server it could not read; a break it claims
    would be a false alarm, since the record was never touched."""
    done, took_ms = await started
    if done.returncode != 0:
        assert done.stderr.startswith("ipmg: error: "), done.stdout + done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert "position " not in done.stderr, done.stderr
    return {"verify_during_fault_exit": done.returncode, "verify_during_fault_ms": took_ms}


def check_audit(
    done: subprocess.CompletedProcess[str], stores: dict[str, list[StoredEvent]]
) -> dict[str, int]:
    """`ipmg audit verify`: every store and its topic verified, and in agreement."""
    assert done.returncode == 0, done.stdout + done.stderr
    table = audit_table(done.stdout)
    assert set(table) == set(WRITE_SOURCES), done.stdout
    for source, row in table.items():
        events = stores.get(source, [])
        head = events[-1].position if events else 0
        assert row["result"] == "ok", done.stdout
        assert (row["events"], row["head position"]) == (str(len(events)), str(head)), source
        assert (row["topic"], row["unpublished"]) == (f"{len(events)} events", "0"), source
    return {
        "audit_exit_status": done.returncode,
        "events_audited": sum(int(row["events"]) for row in table.values()),
    }


def audit_table(output: str) -> dict[str, dict[str, str]]:
    """The rows of `ipmg audit verify`'s table, by source, each cell by its column's name."""
    lines = [
        [cell.strip() for cell in line.strip()[1:-1].split(line.strip()[0])]
        for line in output.splitlines()
        if line.strip()[:1] in {"┃", "│", "|"}
    ]
    assert lines, output
    header, *rows = lines
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


@pytest.fixture(scope="session")
def figures() -> Iterator[dict[str, Any]]:
    collected: dict[str, Any] = {}
    yield collected
    if collected:
        FIGURES.parent.mkdir(exist_ok=True)
        earlier = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
        FIGURES.write_text(json.dumps({**earlier, **collected}, indent=2) + "\n")


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return tmp_path
