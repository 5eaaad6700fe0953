"""Relay: stored events to Kafka through ``ipmg_shared.relay.Relay``, beside aiokafka alone.

The events are appended beforehand (untimed). The relay is timed from its first send to the
moment its published position reaches the last event: reading batches from PostgreSQL, encoding
them, sending with ``acks=all`` and the idempotent producer, waiting for every acknowledgement
and recording progress. The baselines send the very same keys, values and headers, already
encoded, with a producer configured the same way (``make_producer``): once all in flight with a
single wait at the end (the ceiling), and once waiting for the acknowledgements after every
batch of the relay's size, as the relay must before it records progress.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from bench.append import SECRETARIAT
from bench.checklist import AT, NOTE, REGISTRY, ChecklistOpened, ItemTicked
from bench.measure import Case, Stopwatch, Timing
from bench.progress import say
from bench.workspace import Workspace
from ipmg_shared.relay import Relay, make_producer, record_of
from ipmg_shared.settings import Settings
from ipmg_shared.store import EventStore, NewEvent

STREAM_LENGTH = 100  # events per stream, appended in one go
OURS = "ipmg Relay"
CEILING = "aiokafka, one wait"
BATCHED = "aiokafka, wait per batch"

Record = tuple[bytes, bytes, list[tuple[str, bytes]]]


@dataclass(frozen=True)
class RelaySizes:
    events: int
    rounds: int


class FirstSendClock:
    """A producer that notes when the relay first sends, so its start-up is not timed."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self.first_send: Stopwatch | None = None

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        if self.first_send is None:
            self.first_send = Stopwatch()
        return await self._producer.send(*args, **kwargs)


async def fill(store: EventStore, events: int) -> None:
    for start in range(0, events, STREAM_LENGTH):
        opened = NewEvent(ChecklistOpened(title="quarterly follow-up"), occurred_at=AT)
        ticked = [
            NewEvent(ItemTicked(item=f"item-{n}", note=NOTE), occurred_at=AT)
            for n in range(1, min(STREAM_LENGTH, events - start))
        ]
        await store.append(
            f"checklist-{uuid4()}", 0, [opened, *ticked], actor=SECRETARIAT, correlation_id=uuid4()
        )


async def time_relay(settings: Settings, source: str, events: int) -> Timing:
    clock: FirstSendClock | None = None

    def producer() -> FirstSendClock:
        nonlocal clock
        clock = FirstSendClock(make_producer(settings, f"bench-relay-{source}"))
        return clock

    relay = Relay(settings, settings.service_dsn(source), source, producer_factory=producer)
    task = asyncio.create_task(relay.run())
    try:
        # The relay shows its position, not an event to wait on: a 2 ms poll is precise enough.
        while relay.published_position < events:  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        assert clock is not None
        assert clock.first_send is not None
        return clock.first_send.stop()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def time_producer(
    settings: Settings, topic: str, records: list[Record], batch: int
) -> Timing:
    producer = make_producer(settings, f"bench-raw-{topic}")
    await producer.start()
    try:
        watch = Stopwatch()
        for first in range(0, len(records), batch):
            deliveries = [
                await producer.send(topic, value=value, key=key, headers=headers)
                for key, value, headers in records[first : first + batch]
            ]
            await asyncio.gather(*deliveries)
        return watch.stop()
    finally:
        await producer.stop()


async def run(space: Workspace, sizes: RelaySizes) -> list[Case]:
    settings = space.settings
    source = await space.event_store("relay")
    raw_topic = settings.topics.events(f"{source}-raw")
    await space.topics(source, f"{source}-raw")
    pool = await space.pool(source, size=2)
    store = EventStore(pool, source, REGISTRY)
    try:
        await fill(store, sizes.events)
        records = [record_of(event) async for event in store.iter_json()]
    finally:
        await pool.close()
    say(f"relay: {len(records)} events stored, {sum(len(r[1]) for r in records) // 1024} KiB")
    case = Case("relay", f"{sizes.events:,} stored events", (OURS, CEILING, BATCHED), "events")
    timed = {
        OURS: lambda: time_relay(settings, source, sizes.events),
        CEILING: lambda: time_producer(settings, raw_topic, records, len(records)),
        BATCHED: lambda: time_producer(settings, raw_topic, records, settings.relay_batch_size),
    }
    for round_ in range(sizes.rounds):
        admin = await space.admin(source)
        try:  # the same events again: the relay starts over from the first one
            await admin.execute("UPDATE relay_progress SET published_position = 0")
        finally:
            await admin.close()
        order = list(case.contenders)
        for name in order[round_ % 3 :] + order[: round_ % 3]:
            rate = case.record(name, sizes.events, await timed[name]())
            say(f"relay r{round_ + 1} {name:26} {rate:8.0f} events/s")
    return [case]
