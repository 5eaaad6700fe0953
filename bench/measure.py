"""What a benchmark yields: each contender's rate, round after round, side by side.

The machine is shared, so a single figure means little: every case runs our code and its
baselines back to back, round after round, in the same run. The ratio reported is the median
of the rounds' own ratios, each taken between runs a few seconds apart, so a load that comes
and goes on the machine moves both sides of it. Our process's CPU time per unit of work is
kept too: other processes do not add to it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Timing:
    seconds: float  # wall clock
    cpu_seconds: float  # this process, all its threads


class Stopwatch:
    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def stop(self) -> Timing:
        return Timing(time.perf_counter() - self._wall, time.process_time() - self._cpu)


def _median_ratio(ours: Sequence[float], theirs: Sequence[float]) -> float:
    return statistics.median(mine / other for mine, other in zip(ours, theirs, strict=True))


@dataclass
class Case:
    """One line of a benchmark's table: each contender's rate per round, ours first."""

    benchmark: str
    name: str
    contenders: Sequence[str]  # ours first, then the baselines
    unit: str  # what a rate counts per second: "commands", "events"
    events_per_unit: int = 1
    ours_count: int = 1  # how many of the contenders are ours
    size: int = 0  # how many events the case holds, where that is its subject (rebuild)
    rates: dict[str, list[float]] = field(init=False)
    cpu: dict[str, list[float]] = field(init=False)  # CPU seconds of this process per unit
    seconds: dict[str, list[float]] = field(init=False)  # wall clock of each round
    peak_rss_mib: dict[str, list[float]] = field(init=False)  # when run in a child process

    def __post_init__(self) -> None:
        self.rates = {contender: [] for contender in self.contenders}
        self.cpu = {contender: [] for contender in self.contenders}
        self.seconds = {contender: [] for contender in self.contenders}
        self.peak_rss_mib = {contender: [] for contender in self.contenders}

    def record(self, contender: str, count: int, timing: Timing) -> float:
        self.rates[contender].append(count / timing.seconds)
        self.cpu[contender].append(timing.cpu_seconds / count)
        self.seconds[contender].append(timing.seconds)
        return self.rates[contender][-1]

    def note_peak_rss(self, contender: str, mib: float) -> None:
        self.peak_rss_mib[contender].append(mib)

    @property
    def has_memory(self) -> bool:
        return any(self.peak_rss_mib.values())

    @property
    def ours(self) -> Sequence[str]:
        return self.contenders[: self.ours_count]

    @property
    def baselines(self) -> Sequence[str]:
        return self.contenders[self.ours_count :]

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Each of ours with each baseline: the ratios the case reports."""
        return [(mine, theirs) for mine in self.ours for theirs in self.baselines]

    def median(self, contender: str) -> float:
        return statistics.median(self.rates[contender])

    def cpu_per_unit(self, contender: str) -> float:
        return statistics.median(self.cpu[contender])

    def ratio(self, mine: str, theirs: str) -> float:
        """Ours divided by the baseline, round by round: above 1 is faster than it."""
        return _median_ratio(self.rates[mine], self.rates[theirs])

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "case": self.name,
            "unit": f"{self.unit}/s",
            "events_per_unit": self.events_per_unit,
            "median": {name: round(self.median(name), 1) for name in self.contenders},
            "rounds": {
                name: [round(rate, 1) for rate in rates] for name, rates in self.rates.items()
            },
            "ratios": {f"{a} ÷ {b}": round(self.ratio(a, b), 3) for a, b in self.pairs},
            "cpu_microseconds_per_unit": {
                name: round(self.cpu_per_unit(name) * 1e6, 1) for name in self.contenders
            },
            "wall_seconds": {
                name: [round(seconds, 2) for seconds in rounds]
                for name, rounds in self.seconds.items()
            },
            **(
                {
                    "peak_rss_mib": {
                        name: [round(mib, 1) for mib in values]
                        for name, values in self.peak_rss_mib.items()
                    }
                }
                if self.has_memory
                else {}
            ),
        }
