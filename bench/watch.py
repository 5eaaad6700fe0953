"""Audit watch: what continuous verification costs, beside the relay it follows.

Each round fills a store of its own (untimed), then runs the relay (``ipmg_shared.relay.Relay``)
and the watch (``ipmg_shared.audit_watch.AuditWatch``, following the topic from its start) side
by side in this process: the relay is timed from its first send to its last acknowledgement,
and every few milliseconds the positions of both are sampled, which gives the watch's lag (how
long after the relay had published a position the watch had verified it). Then, each alone so
the CPU time is its own: a fresh watch verifies the whole topic from offset 0 (its state saves
included), and one comparison with the store verifies the store's whole chain.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.checklist import REGISTRY
from bench.measure import Case, Stopwatch, Timing
from bench.progress import say
from bench.relay import FirstSendClock, fill
from bench.workspace import Workspace
from ipmg_shared.audit_watch import AuditWatch
from ipmg_shared.relay import Relay, make_producer
from ipmg_shared.store import EventStore

FOLLOW = "audit watch, topic"
STORE = "audit watch, store pass"
RELAY = "ipmg Relay"
SAMPLE_S = 0.005
POLL_S = 0.002


@dataclass(frozen=True)
class WatchSizes:
    events: int
    rounds: int


@dataclass
class WatchCase(Case):
    """The case, with the watch's lag behind the relay in each round (milliseconds)."""

    lag_ms: list[dict[str, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "lag_behind_relay_ms": self.lag_ms}


def new_watch(space: Workspace, source: str, state: Path) -> AuditWatch:
    # A cadence longer than the run: the store pass is timed on its own.
    return AuditWatch(space.settings, state, store_interval_s=3600, sources=[source])


async def stopped(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def relay_beside_watch(
    space: Workspace, source: str, events: int, state: Path
) -> tuple[Timing, dict[str, float]]:
    settings = space.settings
    watch = new_watch(space, source, state)
    follower = watch.followers[source]
    clock: FirstSendClock | None = None

    def producer() -> FirstSendClock:
        nonlocal clock
        clock = FirstSendClock(make_producer(settings, f"bench-watch-{source}"))
        return clock

    relay = Relay(settings, settings.service_dsn(source), source, producer_factory=producer)
    following = asyncio.create_task(watch.follow_topics())
    relaying = asyncio.create_task(relay.run())
    published: list[tuple[float, int]] = []
    verified: list[tuple[float, int]] = []
    timing: Timing | None = None
    try:
        while True:
            now = time.perf_counter()
            published.append((now, relay.published_position))
            verified.append((now, follower.head[0]))
            if timing is None and relay.published_position >= events:
                assert clock is not None
                assert clock.first_send is not None
                timing = clock.first_send.stop()
            if follower.head[0] >= events:
                break
            await asyncio.sleep(SAMPLE_S)
    finally:
        await stopped(relaying)
        await stopped(following)
        watch.state.close()
    assert timing is not None
    return timing, lags(published, verified)


def lags(published: list[tuple[float, int]], verified: list[tuple[float, int]]) -> dict[str, float]:
    """For each position the watch reached, how long after the relay had published it."""
    positions = [position for _, position in published]
    found = []
    reached = 0
    for at, position in verified:
        if position > reached:
            reached = position
            published_at = published[bisect.bisect_left(positions, position)][0]
            # The relay records a batch after its acknowledgements: the watch may be first.
            found.append(max(at - published_at, 0.0) * 1000)
    ordered = sorted(found)
    return {
        "median": round(statistics.median(ordered), 1),
        "p99": round(ordered[int(0.99 * (len(ordered) - 1))], 1),
        "max": round(ordered[-1], 1),
        "samples": len(ordered),
    }


async def watch_alone(
    space: Workspace, source: str, events: int, state: Path
) -> tuple[Timing, Timing]:
    """A fresh watch over the whole topic, timed from its first verified event to the last;
    then its comparison with the store, timed."""
    watch = new_watch(space, source, state)
    follower = watch.followers[source]
    following = asyncio.create_task(watch.follow_topics())
    try:
        while follower.head[0] < 1:  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)
        clock = Stopwatch()
        while follower.head[0] < events:  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)
        timing = clock.stop()
        pool = await space.pool(source, size=1)
        try:
            store_clock = Stopwatch()
            await watch.compare_store(follower, pool)
            store = store_clock.stop()
        finally:
            await pool.close()
        assert follower.found is None, follower.found
    finally:
        await stopped(following)
        watch.state.close()
    return timing, store


async def run(space: Workspace, sizes: WatchSizes) -> list[Case]:
    case = WatchCase(
        "watch", f"{sizes.events:,} events", (FOLLOW, STORE, RELAY), "events", ours_count=2
    )
    with tempfile.TemporaryDirectory(prefix="ipmg-bench-watch-") as folder:
        for round_ in range(sizes.rounds):
            source = await space.event_store("watch")
            await space.topics(source)
            pool = await space.pool(source, size=2)
            try:
                await fill(EventStore(pool, source, REGISTRY), sizes.events)
            finally:
                await pool.close()
            relayed, lag = await relay_beside_watch(
                space, source, sizes.events, Path(folder) / f"{source}-live.sqlite3"
            )
            case.record(RELAY, sizes.events, relayed)
            case.lag_ms.append(lag)
            alone, store = await watch_alone(
                space, source, sizes.events, Path(folder) / f"{source}-alone.sqlite3"
            )
            case.record(FOLLOW, sizes.events - 1, alone)
            case.record(STORE, sizes.events, store)
            say(
                f"watch r{round_ + 1}: relay {case.rates[RELAY][-1]:.0f}/s, watch lag "
                f"median {lag['median']} ms p99 {lag['p99']} ms, watch alone "
                f"{case.rates[FOLLOW][-1]:.0f}/s "
                f"({case.cpu[FOLLOW][-1] * 1e6:.0f} µs CPU/event), store pass "
                f"{case.rates[STORE][-1]:.0f}/s ({case.cpu[STORE][-1] * 1e6:.0f} µs CPU/event)"
            )
    return [case]
