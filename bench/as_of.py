"""``python -m bench.as_of``: where an as-of fold keeps the event loop answering.

The same folds of a history of about 3,000 events (``HistoryWriter``, as the tests make it),
``--folds`` of them, at most ``--concurrency`` at a time, run four ways: on the event loop,
in worker threads (with and without handing the GIL over every few events), in worker
processes (the model comes back pickled). Meanwhile a task on
the loop sleeps 5 ms again and again; how late it wakes is how long any request (a readiness
probe) waits for the loop. Reported: the folds' wall time, and the loop's p50, p99 and
worst lateness. No servers are needed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

from ipmg_reporting.as_of_replays import HAND_OVER_EVERY, fold
from ipmg_reporting.projections import Model
from tests.unit.reporting.history import HistoryWriter, envelopes_of

TICK_S = 0.005


def history(commands: int) -> list[str]:
    writer = HistoryWriter(seed=61)
    commits = [*writer.story(), *writer.random_commits(commands)]
    return [envelope.model_dump_json() for envelope in envelopes_of(commits)]


async def watch_loop(lateness: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        woke_due = time.perf_counter() + TICK_S
        await asyncio.sleep(TICK_S)
        lateness.append(max(0.0, time.perf_counter() - woke_due))


async def run(
    envelopes: list[str],
    folds: int,
    concurrency: int,
    executor: Executor | None,
    hand_over_every: int = HAND_OVER_EVERY,
) -> tuple[float, list[float]]:
    slots = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()

    async def one() -> Model:
        async with slots:
            if executor is None:
                return fold(envelopes, hand_over_every)
            return await loop.run_in_executor(executor, fold, envelopes, hand_over_every)

    lateness: list[float] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_loop(lateness, stop))
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    models = await asyncio.gather(*(one() for _ in range(folds)))
    wall = time.perf_counter() - started
    stop.set()
    await watcher
    assert all(model.document_count == models[0].document_count for model in models)
    return wall, lateness


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.as_of", description=__doc__)
    parser.add_argument("--commands", type=int, default=3000)
    parser.add_argument("--folds", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=2)
    options = parser.parse_args(argv)
    envelopes = history(options.commands)
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{len(envelopes)} events, {options.folds} folds, {options.concurrency} at a time; "
        "loop lateness of a 5 ms sleep"
    )
    print(f"{'where':<22} {'wall s':>7} {'p50 ms':>7} {'p99 ms':>7} {'worst ms':>9}")
    ways: dict[str, tuple[Callable[[], Executor | None], int]] = {
        "loop": (lambda: None, 0),
        "threads, no hand-over": (lambda: ThreadPoolExecutor(options.concurrency), 0),
        "threads": (lambda: ThreadPoolExecutor(options.concurrency), HAND_OVER_EVERY),
        "processes": (lambda: ProcessPoolExecutor(options.concurrency), 0),
    }
    for name, (make, hand_over_every) in ways.items():
        executor = make()
        try:
            if executor is not None:  # workers started and warm before the clock runs
                asyncio.run(run(envelopes[:10], options.concurrency, options.concurrency, executor))
            wall, lateness = asyncio.run(
                run(envelopes, options.folds, options.concurrency, executor, hand_over_every)
            )
        finally:
            if executor is not None:
                executor.shutdown()
        print(
            f"{name:<22} {wall:>7.2f} {statistics.median(lateness) * 1000:>7.1f} "
            f"{percentile(lateness, 0.99) * 1000:>7.1f} {max(lateness) * 1000:>9.1f}"
        )


if __name__ == "__main__":
    main()
