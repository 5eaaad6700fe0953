"""A rebuild beside the live copy while events keep arriving and queries keep coming, and
answers as of past instants against the pure projection of the events recorded by then."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from ipmg_reporting import rebuild
from ipmg_reporting.projections import SOURCES, model_from_envelopes
from ipmg_reporting.rebuild import (
    RebuildWorkerFailed,
    ShareTask,
    fold_shares,
    rebuild_projection,
)
from ipmg_reporting.reports import (
    meeting_history,
    overdue_actions,
    reference_day,
    scorecards,
    tracker,
)
from ipmg_reporting.topic_reader import Record, TopicReader
from ipmg_shared.canonical import parse_instant
from ipmg_shared.settings import Settings
from tests.integration.reporting.system import (
    every_partition_split,
    isolated,
    migrate_reporting,
    projection_rows,
    running_reporting,
    wait_applied,
    write_side,
)
from tests.unit.reporting.history import HistoryWriter

pytestmark = pytest.mark.infra


async def test_a_rebuild_while_events_keep_arriving_loses_nothing(
    postgres: Settings, kafka: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = await isolated(kafka, partitions=3)
    writer = HistoryWriter(seed=23)
    async with write_side(settings) as writes:
        await migrate_reporting(settings)
        await writes.append([*writer.story(), *writer.random_commits(120)])
        writes.start_relays()
        await writes.published()
        async with running_reporting(settings) as reporting:
            rebuilt = asyncio.Event()
            answers: list[int] = []

            async def keep_writing() -> None:
                while not rebuilt.is_set():
                    await writes.append(writer.random_commits(3))
                    await asyncio.sleep(0.01)
                await writes.append(writer.random_commits(20))  # and after the swap

            async def keep_asking() -> None:
                while not rebuilt.is_set():
                    answers.append(len(await reporting.get("/reports/resolutions")))
                    await asyncio.sleep(0.02)

            tasks = [asyncio.create_task(keep_writing()), asyncio.create_task(keep_asking())]
            await asyncio.sleep(0.3)
            try:
                # Two workers fold while events arrive, each partition split between them
                # by stream; this process catches up after them.
                monkeypatch.setattr(rebuild, "split_partitions", every_partition_split)
                report = await rebuild_projection(settings, workers=2)
                monkeypatch.undo()
            finally:
                rebuilt.set()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await writes.published()
            await wait_applied(settings, writes.appended)
            live = await projection_rows(settings)
        envelopes = await writes.envelopes()

    assert report.caught_up >= 0
    assert report.partitions_split == 9  # three topics of three partitions
    assert report.events_applied == report.events_read  # nothing skipped, nothing twice
    assert answers  # queries were answered while the rebuild ran
    assert len(live["event_log"]) == writes.appended == len(envelopes)
    assert sum(row[3] for row in live["consumer_sources"]) == writes.appended
    fresh = await rebuild_projection(settings)  # in this process alone: a short log
    assert fresh.events_applied == writes.appended
    again = await projection_rows(settings)
    for table, rows in live.items():
        assert again[table] == rows, table
    expected = model_from_envelopes(envelopes)
    documents = {row[1]: row[2] for row in live["documents"]}
    assert documents == {
        **{key: doc.version for key, doc in expected.meetings.items()},
        **{key: doc.version for key, doc in expected.resolutions.items()},
    }


def as_json(models: list[Any]) -> list[Any]:
    return [model.model_dump(mode="json") for model in models]


async def test_as_of_answers_equal_a_projection_of_the_events_recorded_by_then(
    postgres: Settings, kafka: Settings
) -> None:
    settings = await isolated(kafka)
    writer = HistoryWriter(seed=31)
    async with write_side(settings) as writes:
        await migrate_reporting(settings)
        total = await writes.append([*writer.story(), *writer.random_commits(150)])
        writes.start_relays()
        await writes.published()
        envelopes = await writes.envelopes()
        recorded = sorted(parse_instant(e["recorded_at"]) for e in envelopes)
        instants = [
            recorded[0] - timedelta(seconds=1),  # before anything happened
            recorded[len(recorded) // 4],  # exactly an event's instant: it is included
            recorded[len(recorded) // 2] + timedelta(seconds=1),
            recorded[-1] - timedelta(days=3),
            recorded[-1],
        ]
        async with running_reporting(settings) as reporting:
            await wait_applied(settings, total)
            some_resolution = str(next(iter(writer.resolutions)))
            for instant in instants:
                known = [e for e in envelopes if parse_instant(e["recorded_at"]) <= instant]
                expected = model_from_envelopes(known)
                docs, today = expected.documents, reference_day(instant)
                as_of = instant.isoformat()
                assert await reporting.get("/reports/resolutions", as_of=as_of) == as_json(
                    tracker(docs, today)
                )
                assert await reporting.get("/reports/scorecards", as_of=as_of) == as_json(
                    scorecards(docs, today)
                )
                assert await reporting.get("/reports/meetings", as_of=as_of) == as_json(
                    meeting_history(docs)
                )
                assert await reporting.get("/reports/overdue", as_of=as_of) == as_json(
                    overdue_actions(docs, today)
                )
                assert await reporting.get(
                    f"/reports/timeline/{some_resolution}", as_of=as_of
                ) == as_json(expected.timeline_of(some_resolution))
            assert await reporting.get("/reports/meetings", as_of=instants[0].isoformat()) == []


async def test_a_failing_worker_fails_the_rebuild_with_its_reason(
    postgres: Settings, kafka: Settings
) -> None:
    settings = await isolated(kafka, partitions=3)
    lost = settings.model_copy(update={"database_prefix": f"{settings.database_prefix}gone_"})
    partitions = [TopicPartition(settings.topics.events("meetings"), p) for p in range(3)]
    tasks = [ShareTask(lost, "reporting", {tp: (0, 10)}, 100, 10) for tp in partitions]

    with pytest.raises(RebuildWorkerFailed, match=r"exited with 1: .*gone_reporting"):
        await fold_shares(tasks, None)


READ_BATCHES = TopicReader.batches


async def added_partitions_first(
    reader: TopicReader, ends: dict[TopicPartition, int], max_records: int = 2000
) -> AsyncIterator[list[Record]]:
    """The records the reader gives, the added partitions' first: which partition a fetch
    brings first is up to timing, so this makes a stream's later events come first."""
    records = [
        record async for batch in READ_BATCHES(reader, ends, max_records) for record in batch
    ]
    yield sorted(records, key=lambda record: record.partition == 0)


async def test_a_rebuild_after_partitions_were_added_applies_every_event(
    postgres: Settings, kafka: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding partitions moves the later events of a stream to another partition than its
    earlier ones (the operator drains the consumers first, docs/operations.md). A rebuild
    reads the partitions side by side, so it may meet a stream's later events first: it
    still applies every one, in its stream's order, and equals the live copy."""
    settings = await isolated(kafka, partitions=1)
    writer = HistoryWriter(seed=31)
    async with write_side(settings) as writes:
        await migrate_reporting(settings)
        await writes.append([*writer.story(), *writer.random_commits(60)])
        writes.start_relays()
        await writes.published()
        async with running_reporting(settings):
            await wait_applied(settings, writes.appended)
        admin = AIOKafkaAdminClient(**settings.kafka_client_options())
        await admin.start()
        try:
            await admin.create_partitions(
                {settings.topics.events(source): NewPartitions(3) for source in SOURCES}
            )
        finally:
            await admin.close()
        await writes.restart_relays()
        await writes.append(writer.random_commits(120))
        await writes.published()
        async with running_reporting(settings):
            await wait_applied(settings, writes.appended)
            live = await projection_rows(settings)
            topics = [settings.topics.events(source) for source in SOURCES]
            async with TopicReader(settings, topics) as reader:
                ends = await reader.end_offsets()
            assert any(end > 0 for tp, end in ends.items() if tp.partition > 0)

            with pytest.MonkeyPatch.context() as patched:
                patched.setattr(TopicReader, "batches", added_partitions_first)
                alone = await rebuild_projection(settings, workers=1)
            rebuilt_alone = await projection_rows(settings)
            monkeypatch.setattr(rebuild, "split_partitions", every_partition_split)
            split = await rebuild_projection(settings, workers=2)
            rebuilt_split = await projection_rows(settings)
            monkeypatch.undo()
            by_partition = await rebuild_projection(settings, workers=2)
            rebuilt_by_partition = await projection_rows(settings)

    for report in (alone, split, by_partition):
        assert report.skipped == {}
        assert report.events_applied == writes.appended
    assert alone.parked > 0  # the case at hand: later events of a stream were read first
    for table, rows in live.items():
        assert rebuilt_alone[table] == rows, table
        assert rebuilt_split[table] == rows, table
        assert rebuilt_by_partition[table] == rows, table
