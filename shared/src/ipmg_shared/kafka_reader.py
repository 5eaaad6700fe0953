"""Reading a whole topic from its start to its current end, outside any consumer group."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from ipmg_shared.settings import Settings


async def read_topic(
    settings: Settings, topic: str, *, from_offsets: dict[int, int] | None = None
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record now in ``topic``, partition by partition, then stop (no group, no commits)."""
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=15000,
    )
    try:
        await asyncio.wait_for(consumer.start(), 30)
    except (KafkaError, TimeoutError) as error:
        await consumer.stop()
        raise ConnectionError(
            f"Kafka at {settings.kafka_bootstrap_servers} does not answer ({type(error).__name__})"
        ) from error
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        if not partitions:
            await consumer._client.force_metadata_update()  # topic created moments ago
            partitions = sorted(consumer.partitions_for_topic(topic) or ())
        assigned = [TopicPartition(topic, partition) for partition in partitions]
        if not assigned:
            return
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        for tp in assigned:
            start = (from_offsets or {}).get(tp.partition)
            if start is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, start)
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
                for record in batch.get(tp, []):
                    if record.offset >= ends[tp]:
                        break
                    yield record
    finally:
        await consumer.stop()
