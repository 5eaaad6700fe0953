"""The live projection, fed through Kafka by the shared consumer runner, against a rebuild
from offset 0 and against answers as of now; the HTTP API around it."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer

from ipmg_reporting import rebuild
from ipmg_reporting.projections import model_from_envelopes
from ipmg_reporting.rebuild import rebuild_projection
from ipmg_reporting.topic_reader import TopicReader
from ipmg_shared.actors import Role
from ipmg_shared.settings import Settings
from ipmg_shared.topics import topic_specs
from tests.integration.reporting.system import (
    admin_connection,
    every_partition_split,
    isolated,
    migrate_reporting,
    projection_rows,
    reader_token,
    running_reporting,
    wait_applied,
    write_side,
)
from tests.unit.reporting.history import HistoryWriter, with_notifications

pytestmark = pytest.mark.infra


async def topic_ends(settings: Settings) -> dict[str, int]:
    """The end offset of every partition of every topic of this test's prefix."""
    names = [spec.name for spec in topic_specs(settings)]
    async with TopicReader(settings, names) as reader:
        ends = await reader.end_offsets()
    assert {tp.topic for tp in ends} == set(names)
    return {f"{tp.topic}/{tp.partition}": end for tp, end in ends.items()}


REPORTS = [
    "/reports/resolutions",
    "/reports/scorecards",
    "/reports/meetings",
    "/reports/overdue",
    "/reports/notifications",
]


async def test_live_projection_equals_a_full_rebuild_row_for_row(
    postgres: Settings, kafka: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = await isolated(kafka, partitions=3)
    writer = HistoryWriter(seed=11)
    async with write_side(settings) as writes:
        await migrate_reporting(settings)
        commits = with_notifications([*writer.story(), *writer.random_commits(230)])
        deliveries = {c.stream_id for c in commits if c.stream_id.startswith("notification-")}
        total = await writes.append(commits)
        writes.start_relays()
        await writes.published()
        async with running_reporting(settings) as reporting:
            await wait_applied(settings, total)
            live = await projection_rows(settings)

            # Answers as of now come from the log through the pure model: equal to live.
            now = datetime.now(UTC).isoformat()
            for path in REPORTS:
                assert await reporting.get(path, as_of=now) == await reporting.get(path), path
            log = await reporting.get("/reports/notifications")
            assert {f"notification-{row['delivery_id']}" for row in log} == deliveries
            assert {row["status"] for row in log} == {"sent"}
            assert any(row["rounds"] == 2 for row in log)  # failed first, then sent
            resolution = (await reporting.get("/reports/resolutions"))[0]["resolution_id"]
            assert await reporting.get(f"/reports/timeline/{resolution}") == await reporting.get(
                f"/reports/timeline/{resolution}", as_of=now
            )

            topics_before = await topic_ends(settings)
            started = time.monotonic()
            report = await rebuild_projection(settings)
            seconds = time.monotonic() - started
            # A replay has no side effect: nothing was published anywhere (dead letters,
            # retries, events) while it ran.
            assert await topic_ends(settings) == topics_before
            rebuilt = await projection_rows(settings)
            # With room for 10 documents in memory, the others wait in the copy's table.
            bounded = await rebuild_projection(settings, batch_size=100, documents_in_memory=10)
            rebuilt_bounded = await projection_rows(settings)
            # Shares of the partitions folded by two worker processes side by side.
            shared = await rebuild_projection(settings, workers=2)
            rebuilt_by_workers = await projection_rows(settings)
            # Every partition split between the two workers by stream.
            monkeypatch.setattr(rebuild, "split_partitions", every_partition_split)
            split = await rebuild_projection(settings, workers=2)
            rebuilt_by_parts = await projection_rows(settings)
            # Queries are served from the swapped-in copy at once.
            assert len(await reporting.get("/reports/resolutions")) == sum(
                1 for row in live["documents"] if row[0] == "resolution"
            )

    assert report.events_read == total
    assert report.events_applied == total
    assert report.skipped == {}
    assert total > 200
    assert seconds < 30
    for table, rows in live.items():
        assert rebuilt[table] == rows, table
        assert rebuilt_bounded[table] == rows, table
        assert rebuilt_by_workers[table] == rows, table
        assert rebuilt_by_parts[table] == rows, table
    assert bounded.documents == report.documents == len(live["documents"])
    assert (shared.events_read, shared.events_applied, shared.skipped) == (total, total, {})
    assert shared.documents == report.documents
    assert split.partitions_split == 9  # three topics of three partitions
    assert (split.events_read, split.events_applied, split.documents) == (
        total,
        total,
        report.documents,
    )
    assert bounded.documents_in_memory_at_most < report.documents_in_memory_at_most
    assert bounded.documents_in_memory_at_most <= 10 + 100  # the limit, and one batch's new
    assert len(live["event_log"]) == total
    assert sum(row[3] for row in live["consumer_sources"]) == total  # each applied once


async def test_reports_need_a_token_and_refuse_naive_instants(
    postgres: Settings, kafka: Settings
) -> None:
    settings = await isolated(kafka)
    await migrate_reporting(settings)
    async with running_reporting(settings) as reporting:
        client = reporting.client
        assert (await client.get("/reports/resolutions")).status_code == 401
        bad = await client.get(
            "/reports/resolutions", headers={"Authorization": "Bearer not-a-token"}
        )
        assert bad.status_code == 401
        assert bad.headers["content-type"] == "application/problem+json"
        focal = reader_token(settings, Role.FOCAL_PERSON)
        ok = await client.get("/reports/meetings", headers={"Authorization": f"Bearer {focal}"})
        assert ok.status_code == 200
        assert ok.json() == []
        naive = await client.get(
            "/reports/overdue",
            params={"as_of": "2016-01-01T00:00:00"},
            headers={"Authorization": f"Bearer {focal}"},
        )
        assert naive.status_code == 422
        wrong_quarter = await client.get(
            "/reports/quarterly/2016-Q9.csv", headers={"Authorization": f"Bearer {focal}"}
        )
        assert wrong_quarter.status_code == 422
        missing = await client.get(
            "/reports/resolutions/nope", headers={"Authorization": f"Bearer {focal}"}
        )
        assert missing.status_code == 404
        assert (await client.get("/reports/quarterly/2016-Q1.csv")).status_code == 401
        assert (await client.get("/")).status_code == 401  # the dashboard asks for a token
        entered = await client.post(
            "/sign-in", data={"token": focal}, headers={"Origin": "http://reporting"}
        )
        assert entered.status_code == 303
        assert entered.headers["location"] == "/"
        assert "httponly" in entered.headers["set-cookie"].lower()
        client.cookies.set("ipmg_token", focal)
        past = await client.get("/", params={"as_of": "2016-01-01T00:00"})
        assert past.status_code == 200
        assert "As of 2016-01-01T00:00:00+05:00" in past.text
        assert "nonce-" in past.headers["content-security-policy"]
        assert (await client.get("/", params={"as_of": "soon"})).status_code == 422
        printable = await client.get("/reports/quarterly/2016-Q1.html")
        assert printable.status_code == 200
        assert "quarterly report 2016-Q1" in printable.text
        client.cookies.clear()
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert {
            "/reports/resolutions",
            "/reports/resolutions/{resolution_id}",
            "/reports/scorecards",
            "/reports/meetings",
            "/reports/overdue",
            "/reports/timeline/{entity_id}",
            "/reports/quarterly/{quarter}.csv",
            "/reports/quarterly/{quarter}.html",
        } <= set(paths)
        assert any(p["name"] == "as_of" for p in paths["/reports/scorecards"]["get"]["parameters"])


async def test_a_rebuild_skips_unknown_events_and_a_new_version_rebuilds_at_start(
    postgres: Settings, kafka: Settings
) -> None:
    settings = await isolated(kafka)
    writer = HistoryWriter(seed=5)
    async with write_side(settings) as writes:
        await migrate_reporting(settings)
        total = await writes.append(writer.story())
        writes.start_relays()
        await writes.published()
        envelopes = await writes.envelopes()
    # A well-formed event of a type reporting does not know, on a known topic (the live
    # consumer dead-letters it; a rebuild counts and skips it).
    unknown = {**envelopes[0], "type": "MeetingMoved", "stream_id": "meeting-x"}
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    await producer.send_and_wait(
        settings.topics.events("meetings"), json.dumps(unknown).encode(), key=b"meeting-x"
    )
    # A NUL character, which PostgreSQL cannot store: skipped, never a failed rebuild.
    payload = {**envelopes[0]["payload"], "meeting_id": str(uuid4()), "venue": "Lahore\x00"}
    nul = {
        **envelopes[0],
        "event_id": str(uuid4()),
        "stream_id": "meeting-nul",
        "position": 10**6,
        "payload": payload,
    }
    await producer.send_and_wait(
        settings.topics.events("meetings"), json.dumps(nul).encode(), key=b"meeting-nul"
    )
    await producer.stop()
    # A live copy of another projection version: the service rebuilds it when it starts,
    # and its consumer waits for the swap rather than write into the old copy.
    admin = await admin_connection(settings)
    await admin.execute("UPDATE live.projection_version SET version = 0")
    await admin.close()
    async with running_reporting(settings) as reporting:
        await wait_applied(settings, total)
        status = await reporting.get("/reports/status")
        assert status["version"] == status["code_version"]
        assert status["events_logged"] == total
    report = await rebuild_projection(settings)
    assert report.skipped == {"unknown_type": 1, "undecodable": 1}
    assert report.events_applied == total
    expected = model_from_envelopes(envelopes)
    documents = (await projection_rows(settings))["documents"]
    assert sorted(row[1] for row in documents if row[0] == "resolution") == sorted(
        expected.resolutions
    )


async def test_a_rebuilt_copy_has_the_keys_and_indexes_of_a_fresh_one(
    postgres: Settings, kafka: Settings
) -> None:
    """The rebuild leaves some keys out while it loads; the copy it swaps in has them all."""
    settings = await isolated(kafka)
    writer = HistoryWriter(seed=3)
    async with write_side(settings) as writes:
        await migrate_reporting(settings)  # the live copy, straight from projection.sql
        await writes.append(writer.story())
        writes.start_relays()
        await writes.published()

    async def keys_and_indexes() -> list[tuple[str, str]]:
        admin = await admin_connection(settings)
        try:
            rows = await admin.fetch(
                "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE connamespace = 'live'::regnamespace "
                "UNION ALL SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'live' "
                "ORDER BY 1, 2"
            )
        finally:
            await admin.close()
        return [(row[0], row[1]) for row in rows]

    fresh = await keys_and_indexes()
    await rebuild_projection(settings)

    assert await keys_and_indexes() == fresh
    assert ("live.event_log", "UNIQUE (event_id)") in fresh
    assert ("live.timeline", 'PRIMARY KEY (entity_id, source, "position")') in fresh
