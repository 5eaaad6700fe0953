"""``python -m bench``: every benchmark beside its baselines, on the running servers.

Writes bench/results/latest.json and the tables in bench/README.md. ``--quick`` runs smaller
sizes (a smoke run, about a minute); the default sizes take a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench import append, growth, latency, rebuild, relay, targets, watch
from bench.machine import describe
from bench.measure import Case
from bench.progress import say
from bench.report import markdown, measured_on, write_json, write_readme
from bench.workspace import workspace
from ipmg_shared.logging import configure_logging

BENCHMARKS = ("append", "relay", "watch", "growth", "rebuild", "latency")


def sizes(quick: bool, rounds: int | None) -> dict[str, Any]:
    if quick:
        return {
            "append": append.AppendSizes(commands={1: 100, 10: 50}, rounds=rounds or 2),
            "relay": relay.RelaySizes(events=10_000, rounds=rounds or 2),
            "watch": watch.WatchSizes(events=10_000, rounds=rounds or 2),
            "growth": growth.GrowthSizes(
                history=(10_000, 100_000), commands=100, rounds=rounds or 2
            ),
            "rebuild": rebuild.RebuildSizes(events=(10_000, 100_000), rounds=rounds or 2),
            "latency": latency.LatencySizes(
                ladder=(50, 200), fixed=(50, 200), seconds=10, floor_seconds=5
            ),
        }
    return {
        "append": append.AppendSizes(commands={1: 400, 10: 200}, rounds=rounds or 5),
        "relay": relay.RelaySizes(events=50_000, rounds=rounds or 3),
        "watch": watch.WatchSizes(events=50_000, rounds=rounds or 3),
        # Short runs, more rounds: the ratio is taken round by round. Two of ours draw 70
        # checklists a round each, and 10^4 stored events hold 1,000.
        "growth": growth.GrowthSizes(
            history=(10_000, 100_000, 1_000_000), commands=70, rounds=rounds or 7
        ),
        # The largest size runs once: its rebuild alone takes minutes.
        "rebuild": rebuild.RebuildSizes(events=(10_000, 100_000, 1_000_000), rounds=rounds or 3),
        # One run per rate (a latency distribution, not a rate to take the median of).
        "latency": latency.LatencySizes(
            ladder=(10, 25, 50, 100, 200, 500), fixed=(50, 200, 500), seconds=15, floor_seconds=10
        ),
    }


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer rounds")
    parser.add_argument("--only", choices=BENCHMARKS, action="append", help="run only these")
    parser.add_argument("--rounds", type=int, help="rounds of every case (default 3 to 5)")
    parser.add_argument(
        "--no-write", action="store_true", help="print the tables; leave README and JSON alone"
    )
    return parser.parse_args(argv)


async def main(argv: Sequence[str]) -> int:
    options = parse(argv)
    configure_logging("WARNING", json=True)
    chosen = options.only or list(BENCHMARKS)
    if "append" in chosen and importlib.util.find_spec("eventsourcing") is None:
        print("the append baseline needs the bench group: uv sync --group bench", file=sys.stderr)
        return 2
    plan = sizes(options.quick, options.rounds)
    started = time.monotonic()
    cases: list[Case] = []
    latencies: latency.LatencyResult | None = None
    async with workspace() as space:
        machine = await describe(space.settings)
        for name, benchmark in (
            ("append", append.run),
            ("relay", relay.run),
            ("watch", watch.run),
            ("growth", growth.run),
            ("rebuild", rebuild.run),
        ):
            if name in chosen:
                await space.settle()
                cases += await benchmark(space, plan[name])
        if "latency" in chosen:
            await space.settle()
            latencies = await latency.run(space, plan["latency"])
    run = {
        "command": " ".join(["python -m bench", *argv]),
        "minutes": round((time.monotonic() - started) / 60, 1),
        "sizes": {name: vars(plan[name]) for name in chosen},
    }
    text = markdown(machine, run, cases, targets.table(cases)) if cases else ""
    end_to_end = latencies.markdown(measured_on(machine, run)) if latencies else ""
    print("\n\n".join(part for part in (text, end_to_end) if part))
    if not options.no_write:
        extra = {"latency": latencies.to_json()} if latencies else None
        say(f"wrote {write_json(machine, run, cases, extra)}")
        if text:  # each block of the README is rewritten only by a run that measured it
            say(f"wrote {write_readme(text)}")
        if end_to_end:
            say(f"wrote {write_readme(end_to_end, block='latency')}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
