"""Reading event topics from offset 0 up to chosen end offsets, in batches, outside any group.

A rebuild reads every partition up to the ends it saw when it started, then, with the live
consumer paused, up to the ends of that moment: the reader remembers where it stopped so the
second pass starts exactly there. A reader may also be given the partitions and the offsets to
start from (a share of a rebuild, or its second pass in another reader).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from ipmg_shared.settings import Settings

Record: TypeAlias = ConsumerRecord[bytes, bytes]


class TopicReader:
    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str],
        starting_at: Mapping[TopicPartition, int] | None = None,
    ) -> None:
        """Every partition of ``topics`` from its beginning, or only those of ``starting_at``
        from the offsets it gives."""
        self._topics = list(topics)
        self._starting_at = dict(starting_at) if starting_at is not None else None
        self._consumer = AIOKafkaConsumer(
            **settings.kafka_client_options(),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=15_000,
        )
        self._next: dict[TopicPartition, int] = {}

    async def __aenter__(self) -> TopicReader:
        await asyncio.wait_for(self._consumer.start(), 30)
        if self._starting_at is not None:
            self._start(self._starting_at)
            return self
        partitions: list[TopicPartition] = []
        for topic in self._topics:
            found = self._consumer.partitions_for_topic(topic)
            if not found:  # not in the cached metadata yet (e.g. created moments ago)
                await self._consumer._client.force_metadata_update()
                found = self._consumer.partitions_for_topic(topic)
            partitions += [TopicPartition(topic, partition) for partition in sorted(found or ())]
        if partitions:
            self._start(await self._consumer.beginning_offsets(partitions))
        return self

    def _start(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        self._consumer.assign(list(offsets))
        for tp, offset in offsets.items():
            self._next[tp] = offset
            self._consumer.seek(tp, offset)

    @property
    def positions(self) -> dict[TopicPartition, int]:
        """Where the next read starts, per partition."""
        return dict(self._next)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await asyncio.wait_for(self._consumer.stop(), 30)

    async def end_offsets(self) -> dict[TopicPartition, int]:
        if not self._next:
            return {}
        ends: dict[TopicPartition, int] = await self._consumer.end_offsets(list(self._next))
        return ends

    def remaining(self, ends: dict[TopicPartition, int]) -> int:
        return sum(max(ends[tp] - self._next[tp], 0) for tp in ends)

    async def batches(
        self, ends: dict[TopicPartition, int], max_records: int = 2000
    ) -> AsyncIterator[list[Record]]:
        """Every record from where the reader stands up to ``ends`` (exclusive), in batches."""
        active = {tp for tp, end in ends.items() if self._next[tp] < end}
        consumer = self._consumer
        consumer.pause(*(set(self._next) - active))
        consumer.resume(*active)
        while active:
            fetched = await consumer.getmany(*active, timeout_ms=500, max_records=max_records)
            batch: list[Record] = []
            for tp in list(active):
                for record in fetched.get(tp, ()):
                    if record.offset >= ends[tp]:
                        break
                    batch.append(record)
                    self._next[tp] = record.offset + 1
                if await consumer.position(tp) >= ends[tp]:
                    # Nothing left below the end (offsets may skip, e.g. over control records).
                    self._next[tp] = max(self._next[tp], ends[tp])
                if self._next[tp] >= ends[tp]:
                    # Records past the end may have been fetched: the next pass starts here.
                    active.discard(tp)
                    consumer.pause(tp)
                    consumer.seek(tp, self._next[tp])
            if batch:
                yield batch
