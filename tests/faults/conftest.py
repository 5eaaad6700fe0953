"""The fault suite: each test runs a steady load of valid commands through the services as
processes, injects one fault, and ends with the same check (see ``check_nothing_lost``).
Figures go to artifacts/reliability.json for docs/reliability.md."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from ipmg_shared.audit import audit_source
from ipmg_shared.db import create_pool
from ipmg_shared.envelope import Envelope
from ipmg_shared.kafka_reader import read_topic
from ipmg_shared.settings import Settings
from ipmg_shared.topics import ensure_topics
from tests.support.load import LoadReport
from tests.support.processes import IPMG, REPO, service_env

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
    """Every accepted command's event is in the store once, on the topic, and applied once by
    the resolutions service's consumer; the audit of store and topic passes."""
    assert load.server_errors == 0, load.statuses
    assert not load.abandoned, load.abandoned
    accepted = set(load.accepted.values())
    pool = await create_pool(settings.service_dsn("meetings"), settings, max_size=2)
    try:
        rows = await pool.fetch(
            "SELECT stream_id, count(*) AS events FROM events "
            "WHERE type = 'MeetingScheduled' GROUP BY stream_id"
        )
    finally:
        await pool.close()
    in_store = {row["stream_id"].removeprefix("meeting-"): row["events"] for row in rows}
    assert set(in_store) == accepted, "every accepted command, and nothing else, is stored"
    assert set(in_store.values()) == {1}, "no command applied twice"

    on_topic: dict[str, int] = {}
    async for record in read_topic(settings, settings.topics.events("meetings")):
        envelope = Envelope.from_bytes(record.value or b"")
        if envelope.type == "MeetingScheduled":
            key = str(envelope.event_id)
            on_topic[key] = on_topic.get(key, 0) + 1
    assert len(on_topic) == len(accepted), "every stored event reached the topic"

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
    audit = await audit_source(settings, "meetings", {})
    assert audit.store.ok
    assert audit.topic is not None
    assert audit.topic.ok
    assert not audit.problems, audit.problems
    return {
        **load.figures(),
        "events_lost": len(accepted) - len(on_topic),
        "effects_applied": int(applied),
        "duplicate_effects": int(applied) - int(known),
        "duplicates_on_topic": sum(on_topic.values()) - len(on_topic),
    }


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
