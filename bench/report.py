"""Results as JSON (bench/results/latest.json) and as tables in bench/README.md."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.measure import Case

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "latest.json"
README = HERE / "README.md"
TITLES = {
    "append": "Append: commands/s (events/s)",
    "relay": "Relay: events/s from the first send until the last event is acknowledged",
    "watch": "Audit watch: events/s verified on the topic and in one store pass, beside the "
    "relay's rate (the watch's lag behind the relay: in the JSON results)",
    "growth": "Growth: commands/s with this many events stored (1 event/command, 1 writer)",
    "rebuild": "Rebuild: events/s replaying the topics from offset 0 (each in a process of its "
    "own)",
}

# Short names for the ratio and CPU columns; the rate columns carry the full ones.
SHORT = {
    "ipmg execute()": "execute",
    "ipmg EventStore.append()": "append",
    "raw asyncpg INSERT": "raw",
    "eventsourcing library": "library",
    "ipmg Relay": "relay",
    "aiokafka, one wait": "aiokafka",
    "aiokafka, wait per batch": "aiokafka per batch",
    "audit watch, topic": "watch",
    "audit watch, store pass": "store pass",
    "ipmg rebuild": "rebuild",
    "aiokafka consumer": "consumer",
}


def short_name(name: str) -> str:
    return SHORT.get(name, name)


def write_json(
    machine: dict[str, Any],
    run: dict[str, Any],
    cases: Sequence[Case],
    extra: dict[str, Any] | None = None,
) -> Path:
    RESULTS.parent.mkdir(exist_ok=True)
    document = {"machine": machine, "run": run, "results": [case.to_json() for case in cases]}
    document.update(extra or {})
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    return RESULTS


def _rate(case: Case, contender: str) -> str:
    rate = case.median(contender)
    if case.unit == "commands" and case.events_per_unit > 1:
        return f"{rate:,.0f} ({rate * case.events_per_unit:,.0f})"
    return f"{rate:,.0f}"


def _cpu(case: Case, contender: str) -> str:
    seconds = case.cpu_per_unit(contender)
    return f"{seconds * 1e3:.2f} ms" if case.unit == "commands" else f"{seconds * 1e6:.0f} µs"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(cases: Sequence[Case]) -> list[str]:
    first = cases[0]
    growth = first.benchmark == "growth"
    ratios = [f"{short_name(mine)} ÷ {short_name(theirs)}" for mine, theirs in first.pairs]
    header = ["stored events" if growth else "case", *first.contenders, *ratios]
    if growth:  # each ratio against itself at the smallest size: 1.00 means nothing grew
        header += [f"{ratio} vs {first.name}" for ratio in ratios]
    header += [f"CPU/{first.unit.rstrip('s')} {short_name(name)}" for name in first.contenders]
    memory = first.has_memory
    if memory:  # the wall time of ours, and each contender's peak memory
        header += [f"wall time {short_name(name)}" for name in first.ours]
        header += [f"peak RSS {short_name(name)}" for name in first.contenders]
    lines = [_row(header), "|---" + "|---:" * (len(header) - 1) + "|"]
    for case in cases:
        cells = [case.name, *[_rate(case, name) for name in case.contenders]]
        cells += [f"{case.ratio(*pair):.2f}" for pair in case.pairs]
        if growth:
            cells += [f"{case.ratio(*pair) / first.ratio(*pair):.2f}" for pair in case.pairs]
        cells += [_cpu(case, name) for name in case.contenders]
        if memory:
            cells += [f"{statistics.median(case.seconds[name]):.1f} s" for name in case.ours]
            cells += [f"{max(case.peak_rss_mib[name]):,.0f} MiB" for name in case.contenders]
        lines.append(_row(cells))
    return lines


def measured_on(machine: dict[str, Any], run: dict[str, Any]) -> str:
    """When, with what command and on what machine and servers a run was made."""
    libraries = ", ".join(f"{name} {version}" for name, version in machine["libraries"].items())
    return (
        f"Measured {machine['date']} with `{run['command']}` ({run['minutes']} min) on "
        f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB RAM, "
        f"{machine['os']}; PostgreSQL {machine['postgresql']} "
        f"(synchronous_commit={machine['postgresql_synchronous_commit']}), "
        f"Apache Kafka {machine['kafka']}, Python {machine['python']} ({libraries}). "
        f"Load average at the start: {', '.join(map(str, machine['load_average_at_start']))}."
    )


def markdown(
    machine: dict[str, Any],
    run: dict[str, Any],
    cases: Sequence[Case],
    targets: Sequence[str] = (),
) -> str:
    """The run's tables, after the lines of ``targets`` (see ``bench.targets``)."""
    lines = [
        f"{measured_on(machine, run)} "
        "Rates are medians of the rounds; a ratio `ours ÷ baseline` is the median of the "
        "rounds' own ratios (above 1: ours is faster); CPU is this process's time per unit of "
        "work (median).",
    ]
    if targets:
        lines += ["", *targets]
    for benchmark, title in TITLES.items():
        chosen = [case for case in cases if case.benchmark == benchmark]
        if chosen:
            rounds = len(chosen[0].rates[chosen[0].contenders[0]])
            lines += ["", f"**{title}**, {rounds} rounds", "", *table(chosen)]
    return "\n".join(lines)


def write_readme(text: str, block: str = "results") -> Path:
    """Replace one block of the README (between its markers); the other blocks stay."""
    start, end = f"<!-- bench:{block}:start -->", f"<!-- bench:{block}:end -->"
    readme = README.read_text() if README.exists() else ""
    if start in readme and end in readme:
        before, rest = readme.split(start, 1)
        after = rest.split(end, 1)[1]
    else:
        before, after = readme.rstrip("\n") + "\n\n", "\n"
    README.write_text(f"{before}{start}\n{text}\n{end}{after}")
    return README
