"""A consumer's handled offsets commit once it is idle, and never after it has stopped."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from ipmg_shared.runtime import COMMIT_EVERY_S, HandledOffsets


@dataclass
class Record:
    topic: str
    partition: int
    offset: int


@dataclass
class StoppedConsumer:
    """What aiokafka's consumer does after ``stop()``: it still answers, and still commits."""

    partition: TopicPartition = field(default_factory=lambda: TopicPartition("events", 0))
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)

    def assignment(self) -> set[TopicPartition]:
        return {self.partition}

    async def position(self, partition: TopicPartition) -> int:
        return 3

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)


async def test_the_offsets_of_the_last_records_commit_once_no_record_follows() -> None:
    consumer = StoppedConsumer()
    handled = HandledOffsets()
    handled.add([Record("events", 0, 1), Record("events", 0, 2)])

    handled.commit_once_idle(consumer)
    await asyncio.sleep(COMMIT_EVERY_S + 0.2)

    assert consumer.commits == [{consumer.partition: 3}]


async def test_nothing_commits_once_the_consumer_has_stopped() -> None:
    consumer = StoppedConsumer()
    handled = HandledOffsets()
    handled.add([Record("events", 0, 1), Record("events", 0, 2)])
    handled.commit_once_idle(consumer)

    handled.stop()  # the broker stopped before the records went idle
    handled.commit_once_idle(consumer)  # the message in hand, finishing meanwhile
    await asyncio.sleep(COMMIT_EVERY_S + 0.2)

    assert consumer.commits == []
