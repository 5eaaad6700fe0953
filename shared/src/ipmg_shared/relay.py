"""Transactional outbox relay: stored events to the source's Kafka topic, in position order.

The events table is the outbox. One relay instance per store publishes (it holds a session
advisory lock; others wait for it), woken by LISTEN/NOTIFY on append with a polling fallback.
A batch is marked published only after Kafka acknowledged every record (idempotent producer,
``acks=all``); if the outcome is unknown the batch is sent again, and consumers absorb the
duplicates by stream version.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import asyncpg
from aiokafka import AIOKafkaProducer

from ipmg_shared.db import connect
from ipmg_shared.logging import get_logger
from ipmg_shared.metrics import EVENTS_PUBLISHED, RELAY_LAG
from ipmg_shared.settings import Settings
from ipmg_shared.store import EVENT_COLUMNS, EVENTS_APPENDED_CHANNEL, json_from_row

RELAY_LOCK_KEY = 0x1A11_0020
MAX_BACKOFF_S = 10.0

log = get_logger("ipmg.relay")

ProducerFactory = Callable[[], AIOKafkaProducer]

# The position recorded as published and the batch of events after it, in one round trip: no
# event after it is one row of NULL event columns.
NEXT_BATCH = f"""
SELECT progress.published_position, e.*
FROM relay_progress AS progress
LEFT JOIN LATERAL (
    SELECT {EVENT_COLUMNS} FROM events WHERE position > progress.published_position
    ORDER BY position LIMIT $2
) AS e ON true
WHERE progress.topic = $1
ORDER BY e.position
"""
# The batch recorded as published, and the store's head for the lag, in one round trip.
MARK_PUBLISHED = """
UPDATE relay_progress SET published_position = $2, updated_at = now() WHERE topic = $1
RETURNING (SELECT coalesce(max(position), 0) FROM events)
"""


def make_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    # aiokafka defaults to acks=1 without idempotence: both are set explicitly.
    return AIOKafkaProducer(
        **settings.kafka_client_options(),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        # The relay hands a whole batch over before it yields and waits for every
        # acknowledgement before the next: lingering would only hold the last records back.
        linger_ms=0,
        max_batch_size=1024 * 1024,
        request_timeout_ms=int(settings.kafka_send_timeout_s * 1000),
    )


def record_of(event: dict[str, object]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Key, value and headers of one event on its topic."""
    value = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    headers = [
        ("type", str(event["type"]).encode()),
        ("schema_version", str(event["schema_version"]).encode()),
        ("event_id", str(event["event_id"]).encode()),
        ("source", str(event["source"]).encode()),
    ]
    return str(event["stream_id"]).encode(), value, headers


class Relay:
    def __init__(
        self,
        settings: Settings,
        dsn: str,
        source: str,
        *,
        producer_factory: ProducerFactory | None = None,
    ) -> None:
        self.settings = settings
        self.dsn = dsn
        self.source = source
        self.topic = settings.topics.events(source)
        self._producer_factory = producer_factory or (
            lambda: make_producer(settings, f"ipmg-relay-{source}")
        )
        self.is_leader = False
        self.published_position = 0

    async def run(self) -> None:
        """Publish until cancelled; every failure is logged and retried with backoff."""
        backoff = 0.5
        while True:
            try:
                await self._lead_and_publish()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the relay must outlive any fault
                self.is_leader = False
                log.warning("relay_fault", source=self.source, error=repr(error), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            else:
                backoff = 0.5

    async def _lead_and_publish(self) -> None:
        connection = await connect(self.dsn, self.settings)
        producer: AIOKafkaProducer | None = None
        try:
            # Another instance leads while it holds the lock; there is nothing to wait on but time.
            while not await connection.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY):  # noqa: ASYNC110
                await asyncio.sleep(self.settings.relay_poll_interval_s)
            self.is_leader = True
            wake = asyncio.Event()
            await connection.add_listener(EVENTS_APPENDED_CHANNEL, lambda *_: wake.set())
            await connection.execute(
                "INSERT INTO relay_progress (topic) VALUES ($1) ON CONFLICT DO NOTHING", self.topic
            )
            producer = self._producer_factory()
            await asyncio.wait_for(producer.start(), self.settings.kafka_send_timeout_s)
            log.info("relay_leading", source=self.source, topic=self.topic)
            while True:
                wake.clear()
                if await self.publish_batch(connection, producer) < self.settings.relay_batch_size:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), self.settings.relay_poll_interval_s)
        finally:
            self.is_leader = False
            if producer is not None:
                # An idempotent producer can hang in stop() while Kafka is down.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.stop(), 5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)

    async def publish_batch(
        self, connection: asyncpg.Connection, producer: AIOKafkaProducer
    ) -> int:
        """Publish the next batch after what is recorded as published; returns its size."""
        found = await connection.fetch(NEXT_BATCH, self.topic, self.settings.relay_batch_size)
        # Read each time, not kept: an operator may set it back to publish everything again.
        self.published_position = found[0]["published_position"]
        rows = [row for row in found if row["position"] is not None]
        if not rows:
            RELAY_LAG.labels(self.source).set(0)
            return 0
        deliveries = []
        for row in rows:
            key, value, headers = record_of(json_from_row(row))
            deliveries.append(
                await producer.send(self.topic, value=value, key=key, headers=headers)
            )
        # Outcome unknown on timeout: nothing is marked, the batch goes again.
        await asyncio.wait_for(asyncio.gather(*deliveries), self.settings.kafka_send_timeout_s)
        last = rows[-1]["position"]
        head = await connection.fetchval(MARK_PUBLISHED, self.topic, last)
        self.published_position = last
        EVENTS_PUBLISHED.labels(self.source).inc(len(rows))
        RELAY_LAG.labels(self.source).set(head - last)
        return len(rows)
