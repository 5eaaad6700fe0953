"""Rebuild: the reporting projection rebuilt from offset 0, beside a raw aiokafka consumer.

For each size (10^4, 10^5 and 10^6 events by default) a valid history is published on its own
event topics (``bench.history``: untimed), with a reporting database of its own. Then, round
after round, each contender runs in a child process of its own, so its peak memory is its
own (sampled from /proc while it runs: its VmHWM plus the resident memory of the worker
processes it starts):

- *ipmg rebuild*: ``rebuild_projection``, what ``ipmg reporting rebuild`` runs: read the
  topics from offset 0, decode and check every envelope, fold it by the projection code, write
  the log, timeline and documents by COPY, then catch up and swap the copy in. With its
  default of one worker process per CPU (two here; one below 50,000 events), each folding a
  share of the three partitions per topic. Timed from its first connection to the swap (the
  report's own seconds); its CPU time includes its workers'.
- *aiokafka consumer*: the same topics read from offset 0 to their end with a bare
  ``AIOKafkaConsumer`` (``getmany`` in batches, records counted, nothing decoded). Timed from
  the consumer's start to the last record.

The sizes together show whether the cost per event grows with the log, and the peak memory
whether the rebuild's does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench.history import publish_history
from bench.measure import Case, Timing
from bench.progress import say
from bench.workspace import Workspace
from ipmg_reporting.main import service as reporting_service
from ipmg_reporting.projections import SOURCES
from ipmg_reporting.rebuild import rebuild_projection
from ipmg_shared.settings import Settings
from ipmg_shared.topics import ensure_topics

OURS = "ipmg rebuild"
RAW = "aiokafka consumer"


@dataclass(frozen=True)
class RebuildSizes:
    events: tuple[int, ...]
    rounds: int  # at the largest size, one round (it alone takes minutes)


@dataclass(frozen=True)
class ChildRun:
    timing: Timing
    events: int
    peak_rss_mib: float
    detail: dict[str, Any]


def child_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.admin_dsn(),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "IPMG_DATABASE_PREFIX": settings.database_prefix,
        "IPMG_TOPIC_PREFIX": settings.topic_prefix,
        "IPMG_LOG_LEVEL": "WARNING",
    }


def status_mib(pid: int, field: str) -> float:
    """A memory field of the process's /proc status (VmHWM, VmRSS) in MiB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return 0.0
    return 0.0


def descendants(pid: int) -> list[int]:
    """The process's children, their children, and so on (a rebuild's worker processes)."""
    found = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listed:
            children = [int(child) for child in listed.read().split()]
    except OSError:
        return []
    for child in children:
        found += [child, *descendants(child)]
    return found


def resident_mib(pid: int) -> float:
    """Memory of the process and its workers at this moment: the process's own peak so far
    (VmHWM), plus its descendants' current resident sets (sampled every 0.1 s)."""
    return status_mib(pid, "VmHWM") + sum(status_mib(p, "VmRSS") for p in descendants(pid))


async def run_child(settings: Settings, contender: str) -> ChildRun:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.rebuild",
        "--child",
        "ours" if contender == OURS else "raw",
        env=child_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    communicating = asyncio.ensure_future(process.communicate())
    peak = 0.0
    while not communicating.done():
        peak = max(peak, resident_mib(process.pid))
        await asyncio.wait({communicating}, timeout=0.1)
    out, err = communicating.result()
    if process.returncode != 0:
        raise RuntimeError(f"{contender} failed ({process.returncode}): {err.decode()[-2000:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    return ChildRun(
        Timing(result["seconds"], result["cpu_seconds"]),
        result["events"],
        peak,
        result.get("detail", {}),
    )


async def prepare(space: Workspace, events: int) -> Settings:
    """Topics and a reporting database of this size's own, the history on the topics.

    The topics have three partitions each, as deploy/compose.yaml makes them: a rebuild folds
    shares of the partitions side by side."""
    base = space.settings
    settings = base.model_copy(
        update={
            "database_prefix": f"{base.database_prefix}r{events}_",
            "topic_prefix": f"{base.topic_prefix}r{events}.",
            "topic_partitions": 3,
        }
    )
    await ensure_topics(settings, list(SOURCES))
    await reporting_service.migrate(settings)
    started = time.monotonic()
    sent = await publish_history(settings, events)
    say(
        f"rebuild: {events:,} events published ({sent / 2**20:,.0f} MiB) "
        f"in {time.monotonic() - started:.0f} s"
    )
    return settings


async def run(space: Workspace, sizes: RebuildSizes) -> list[Case]:
    cases = []
    for events in sizes.events:
        settings = await prepare(space, events)
        case = Case("rebuild", f"{events:,} events", (OURS, RAW), "events", size=events)
        rounds = 1 if events == max(sizes.events) and len(sizes.events) > 1 else sizes.rounds
        for round_ in range(rounds):
            order = [OURS, RAW] if round_ % 2 == 0 else [RAW, OURS]
            for contender in order:
                child = await run_child(settings, contender)
                if child.events != events:
                    raise RuntimeError(f"{contender} read {child.events} of {events} events")
                rate = case.record(contender, events, child.timing)
                case.note_peak_rss(contender, child.peak_rss_mib)
                say(
                    f"rebuild {events:>9,} r{round_ + 1} {contender:18} {rate:8.0f} events/s "
                    f"{child.timing.seconds:6.1f} s, peak RSS {child.peak_rss_mib:5.0f} MiB"
                    + (f" {child.detail}" if child.detail else "")
                )
        cases.append(case)
    return cases


# --- the children ------------------------------------------------------------------------


def cpu_with_workers() -> float:
    """CPU seconds of this process and of the worker processes it has waited for."""
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + workers.ru_utime + workers.ru_stime


async def rebuild_child(settings: Settings) -> dict[str, Any]:
    cpu = cpu_with_workers()
    report = await rebuild_projection(settings)
    return {
        "seconds": report.seconds,
        "cpu_seconds": cpu_with_workers() - cpu,
        "events": report.events_read,
        "detail": {
            "applied": report.events_applied,
            "documents": report.documents,
            "documents_in_memory_at_most": report.documents_in_memory_at_most,
        },
    }


async def raw_consumer_child(settings: Settings) -> dict[str, Any]:
    cpu = time.process_time()
    started = time.perf_counter()
    topics = [settings.topics.events(source) for source in SOURCES]
    # Subscribed without a group: every partition is assigned, read from the earliest offset.
    consumer = AIOKafkaConsumer(
        *topics,
        **settings.kafka_client_options(),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        # aiokafka assigns once it has the topics' metadata, and offers nothing to wait on.
        while len({tp.topic for tp in consumer.assignment()}) < len(topics):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        partitions = sorted(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        events = 0
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=500, max_records=2000)
            for tp, records in fetched.items():
                events += sum(1 for record in records if record.offset < ends[tp])
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "events": events,
    }


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rebuild")
    parser.add_argument("--child", choices=("ours", "raw"), required=True)
    options = parser.parse_args(argv)
    from ipmg_shared.logging import configure_logging

    configure_logging("WARNING", json=True)
    settings = Settings()
    timed = rebuild_child if options.child == "ours" else raw_consumer_child
    print(json.dumps(asyncio.run(timed(settings))))


if __name__ == "__main__":
    child_main(sys.argv[1:])
