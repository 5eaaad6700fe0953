"""The issue's targets, checked against one run's figures: which are met, in one table.

Each line names a target, the case of the tables it is read from and that case's figure in
this run, so what the tables show and what is claimed of them cannot drift apart. The
end-to-end target is checked by the latency benchmark, in its own block.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from bench.measure import Case
from bench.report import short_name

# "Append with batching within 50% of the raw asyncpg baseline": at least half its rate, with
# several events per command (one command's events are written as one batch).
APPEND_OF_RAW = 0.50
APPEND_OF_LIBRARY = 2.0
REBUILD_OF_CONSUMER = 0.40
REBUILD_EVENTS = 1_000_000
REBUILD_WITHIN_S = 60.0
# "Bounded": ten times the events may not take the peak memory above this multiple (memory
# that grew with the events would be ten times as much). Below REBUILD_MEMORY_FROM events the
# rebuild's document cache (10,000 documents) is still filling, so memory grows by design.
REBUILD_MEMORY_GROWTH_AT_MOST = 1.5
REBUILD_MEMORY_FROM = 100_000


@dataclass(frozen=True)
class Check:
    target: str
    case: str
    figure: str
    met: bool | None  # None: this run did not measure what the target names


def checks(cases: Sequence[Case]) -> list[Check]:
    return [*_append_checks(cases), *_rebuild_checks(cases)]


def _append_checks(cases: Sequence[Case]) -> Iterator[Check]:
    appends = [case for case in cases if case.benchmark == "append"]
    for case in appends:
        if case.events_per_unit > 1:
            ratio = case.ratio(case.ours[0], _baseline(case, "raw"))
            yield Check(
                f"Append with batching at least {APPEND_OF_RAW:.2f} of raw asyncpg",
                case.name,
                f"{ratio:.2f}",
                ratio >= APPEND_OF_RAW,
            )
    for case in appends:
        ratio = case.ratio(case.ours[0], _baseline(case, "library"))
        yield Check(
            f"Append at least {APPEND_OF_LIBRARY:.0f} times the eventsourcing library",
            case.name,
            f"{ratio:.2f}",
            ratio >= APPEND_OF_LIBRARY,
        )


def _rebuild_checks(cases: Sequence[Case]) -> Iterator[Check]:
    rebuilds = sorted(
        (case for case in cases if case.benchmark == "rebuild"), key=lambda case: case.size
    )
    if not rebuilds:
        return
    largest = rebuilds[-1]
    ratio = largest.ratio(largest.ours[0], largest.baselines[0])
    yield Check(
        f"Rebuild at least {REBUILD_OF_CONSUMER:.2f} of the raw aiokafka consumer",
        largest.name,
        f"{ratio:.2f}",
        ratio >= REBUILD_OF_CONSUMER,
    )
    million = next((case for case in rebuilds if case.size == REBUILD_EVENTS), None)
    target = f"Rebuild of {REBUILD_EVENTS:,} events in under {REBUILD_WITHIN_S:.0f} s"
    if million is None:
        yield Check(target, f"{REBUILD_EVENTS:,} events", "not measured", None)
    else:
        seconds = statistics.median(million.seconds[million.ours[0]])
        yield Check(target, million.name, f"{seconds:.1f} s", seconds < REBUILD_WITHIN_S)
    tenth = next((case for case in rebuilds if case.size * 10 == largest.size), None)
    target = (
        f"Rebuild memory bounded: peak RSS at most {REBUILD_MEMORY_GROWTH_AT_MOST} times as "
        f"much with ten times the events, from {REBUILD_MEMORY_FROM:,}"
    )
    if tenth is None or tenth.size < REBUILD_MEMORY_FROM:
        sizes = f"{REBUILD_MEMORY_FROM:,} and {10 * REBUILD_MEMORY_FROM:,} events"
        yield Check(target, sizes, "not measured", None)
        return
    smaller, larger = (max(case.peak_rss_mib[case.ours[0]]) for case in (tenth, largest))
    growth = larger / smaller
    yield Check(
        target,
        f"{tenth.name} → {largest.name}",
        f"{smaller:,.0f} → {larger:,.0f} MiB ({growth:.2f} times)",
        growth <= REBUILD_MEMORY_GROWTH_AT_MOST,
    )


def _baseline(case: Case, short: str) -> str:
    return next(name for name in case.baselines if short_name(name) == short)


def table(cases: Sequence[Case]) -> list[str]:
    """The checks as Markdown lines; none when the run measured nothing a target names."""
    found = checks(cases)
    if not found:
        return []
    verdict = {True: "**met**", False: "not met", None: "not measured"}
    return [
        "**Targets**, each read from this run's tables below (end to end: in the latency block)",
        "",
        "| target | case | this run | status |",
        "|---|---|---:|---|",
        *(
            f"| {check.target} | {check.case} | {check.figure} | {verdict[check.met]} |"
            for check in found
        ),
    ]
