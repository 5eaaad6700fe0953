"""A large valid IPMG history on Kafka, fast: one block made by the domain, copied many times.

A block of a few thousand events is made by the write services' own ``decide`` (the tests'
``HistoryWriter``): meetings scheduled, held and cancelled, resolutions from passing to
closing. Each copy of the block is the same story about other meetings and resolutions: every
UUID gets the copy's number as its first eight hex digits (so entities, streams, events and
correlations are new), and positions continue each source's sequence. Hashes are the block's:
reporting does not check the chain (the audit does), so the copies need not re-hash.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

from ipmg_shared.settings import Settings
from tests.unit.reporting.history import HistoryWriter, envelopes_of

UUID_HEAD = re.compile(r"\b[0-9a-f]{8}(?=-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b)")
POSITION = re.compile(r'"position":\d+')
BLOCK_COMMANDS = 3000  # about 3,000 events: 80 meetings, 240 resolutions


@dataclass(frozen=True)
class TemplateEvent:
    source: str
    position: int  # within the block's source
    key: str  # %-templates: %(c)s is the copy's UUID head, %(p)d the position
    value: str
    event_id: str
    event_type: str
    schema_version: bytes


def block(seed: int = 11) -> tuple[list[TemplateEvent], dict[str, int]]:
    """The block's events as templates, and how many events each source has in it."""
    writer = HistoryWriter(seed=seed)
    envelopes = envelopes_of([*writer.story(), *writer.random_commits(BLOCK_COMMANDS)])
    templates = []
    counts: dict[str, int] = {}
    for envelope in envelopes:
        counts[envelope.source] = counts.get(envelope.source, 0) + 1

        def template(text: str) -> str:
            return UUID_HEAD.sub("%(c)s", text.replace("%", "%%"))

        value = template(envelope.to_bytes().decode())
        value = POSITION.sub('"position":%(p)d', value)
        templates.append(
            TemplateEvent(
                source=envelope.source,
                position=envelope.position,
                key=template(envelope.stream_id),
                value=value,
                event_id=template(str(envelope.event_id)),
                event_type=envelope.type,
                schema_version=str(envelope.schema_version).encode(),
            )
        )
    return templates, counts


Message = tuple[str, bytes, bytes, list[tuple[str, bytes]]]  # source, key, value, headers


def copies(
    templates: list[TemplateEvent], counts: dict[str, int], events: int
) -> Iterator[Message]:
    """``events`` messages: copy after copy of the block (the last one cut short)."""
    made = 0
    copy = 0
    while made < events:
        head = f"{copy:08x}"
        for event in templates:
            if made == events:
                return
            fields = {"c": head, "p": copy * counts[event.source] + event.position}
            headers = [
                ("type", event.event_type.encode()),
                ("schema_version", event.schema_version),
                ("event_id", (event.event_id % fields).encode()),
                ("source", event.source.encode()),
            ]
            key = (event.key % fields).encode()
            yield event.source, key, (event.value % fields).encode(), headers
            made += 1
        copy += 1


async def publish_history(settings: Settings, events: int) -> int:
    """``events`` events of a valid history on the event topics; returns the bytes sent.

    Sent in batches built by hand (aiokafka's ``send_batch``): a message at a time costs
    more than the rest of the benchmark. A stream's events go to one partition, in order.
    """
    templates, counts = block()
    producer = AIOKafkaProducer(
        **settings.kafka_client_options(),
        acks=1,
        max_batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    try:
        partitions = {
            source: sorted(await producer.partitions_for(settings.topics.events(source)))
            for source in counts
        }
        batches: dict[tuple[str, int], BatchBuilder] = {}
        deliveries: list[asyncio.Future[object]] = []
        sent = 0

        async def flush(source: str, partition: int) -> None:
            batch = batches.pop((source, partition))
            topic = settings.topics.events(source)
            deliveries.append(await producer.send_batch(batch, topic, partition=partition))

        for source, key, value, headers in copies(templates, counts, events):
            choices = partitions[source]
            partition = choices[zlib.crc32(key) % len(choices)]
            batch = batches.get((source, partition)) or batches.setdefault(
                (source, partition), producer.create_batch()
            )
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                await flush(source, partition)
                batch = batches[(source, partition)] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None, headers=headers)
            sent += len(value)
        for source, partition in list(batches):
            await flush(source, partition)
        await asyncio.gather(*deliveries)
        return sent
    finally:
        await producer.stop()
