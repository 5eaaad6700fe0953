"""How the latency benchmark turns what it observed into figures (no timing is asserted)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from bench.latency import Probe, Step, Tracker, percentile


def step_of(latencies: Sequence[float | None], offered: int = 10, status: int = 201) -> Step:
    step = Step("ours", offered, seconds=len(latencies) / offered)
    for n, latency in enumerate(latencies):
        scheduled = n / offered
        probe = Probe(f"k{n}", scheduled, answered=scheduled, status=status)
        probe.seen = None if latency is None else scheduled + latency
        step.probes.append(probe)
    return step


def test_percentiles_are_nearest_rank_and_count_the_unseen_as_infinite() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([*values[:99], math.inf], 0.99) == 99.0
    assert math.isinf(percentile([*values[:98], math.inf, math.inf], 0.99))


def test_a_rate_is_sustained_only_fast_complete_and_kept_up_with() -> None:
    assert step_of([0.02] * 100).sustained
    assert not step_of([0.02] * 98 + [0.5, 0.5]).sustained  # p99 over 100 ms
    assert not step_of([0.02] * 99 + [None]).sustained  # one never seen
    assert not step_of([0.02] * 100, status=503).sustained  # refused
    late = step_of([0.02] * 100)
    late.cutoff = late.probes[50].seen or 0.0  # seen after the step's end: not seen
    assert late.unseen == 49
    assert not late.sustained


def test_achieved_rate_runs_from_the_first_scheduled_send_to_the_last_seen() -> None:
    kept_up = step_of([0.01] * 100, offered=10)  # 100 over 9.9 s + 10 ms
    assert 9.9 < kept_up.achieved <= 10.1
    fell_behind = step_of([0.01 + n * 0.1 for n in range(100)], offered=10)
    assert fell_behind.achieved < 5.1
    assert not fell_behind.sustained


def test_slow_windows_tell_a_pause_from_a_pipeline_that_cannot_keep_up() -> None:
    # 40 commands a second for 2 s: eight windows of 250 ms, ten commands each.
    assert step_of([0.02] * 80, offered=40).slow_windows() == (0, 8)
    paused: list[float | None] = [0.02] * 80
    paused[30:33] = [0.3, 0.25, 0.2]  # within one window (30-39)
    paused[79] = None  # never seen: slow too, in the last window
    assert step_of(paused, offered=40).slow_windows() == (2, 8)
    behind = [0.02 + n * 0.002 for n in range(80)]  # over 100 ms from the 41st command on
    assert step_of(behind, offered=40).slow_windows() == (4, 8)


def test_the_tracker_marks_each_probe_once_and_forgets_the_refused() -> None:
    tracker = Tracker()
    first, second = Probe("a", 0.0), Probe("b", 0.1)
    tracker.add(first)
    tracker.add(second)
    assert tracker.oldest() is first
    tracker.seen("a", 0.05, (0.01, 0.02, 0.03))
    tracker.seen("a", 0.09)  # a duplicate notification changes nothing
    assert first.seen == 0.05
    assert first.marks == (0.01, 0.02, 0.03)
    assert tracker.oldest() is second
    tracker.failed("b")
    assert not tracker.pending
