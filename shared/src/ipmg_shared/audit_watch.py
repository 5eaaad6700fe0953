"""``ipmg audit watch``: continuous verification of a live system.

It follows each write source's event topic from the head it last verified (a plain aiokafka
consumer that assigns and seeks, in no group), checks every record as it arrives
(``TopicFollower``), and on a cadence verifies each store's whole chain and signed checkpoints
and compares it with what the topic showed. Its heads are kept in a SQLite file
(``WatchState``); its metrics and health are served over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import APIRouter, FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ipmg_shared.audit import CheckpointCheck
from ipmg_shared.audit_follow import TopicFollower
from ipmg_shared.audit_watch_state import WatchBreak, WatchState
from ipmg_shared.chain import BreakKind, ChainBreak, ChainVerifier
from ipmg_shared.checkpoints import Keyring
from ipmg_shared.db import create_pool
from ipmg_shared.events import EventRegistry
from ipmg_shared.logging import get_logger
from ipmg_shared.metrics import (
    AUDIT_BREAKS,
    AUDIT_EVENTS_VERIFIED,
    AUDIT_SECONDS_SINCE_VERIFIED,
    AUDIT_STORE_HEAD,
    AUDIT_VERIFIED_POSITION,
)
from ipmg_shared.problems import problem
from ipmg_shared.settings import WRITE_SOURCES, Settings
from ipmg_shared.store import EventStore

log = get_logger("ipmg.audit.watch")
FETCH_TIMEOUT_MS = 500
STORE_RETRY_S = 2.0
KAFKA_PROBE_EVERY_S = 2.0
KAFKA_PROBE_TIMEOUT_S = 3.0


class AuditWatch:
    def __init__(
        self,
        settings: Settings,
        state_path: Path,
        *,
        store_interval_s: float,
        sources: Sequence[str] = WRITE_SOURCES,
    ) -> None:
        self.settings = settings
        self.store_interval_s = store_interval_s
        self.state = WatchState(state_path)
        keyring = Keyring(settings.keys_dir)
        self.followers = {
            source: TopicFollower(
                self.state.load(source, settings.topics.events(source)), keyring.public_keys
            )
            for source in sources
        }
        self._by_topic = {f.saved.topic: f for f in self.followers.values()}
        self._consumer: AIOKafkaConsumer | None = None
        self._started = time.time()
        self._published_before: dict[str, int] = {}
        self.checks: dict[str, str] = {"kafka": "starting", "stores": "starting"}
        for source, follower in self.followers.items():
            self._expose(follower)
            AUDIT_BREAKS.labels(source).set(1 if follower.found else 0)
            if follower.found is not None:
                log.warning("watch_resumed_after_break", source=source, found=str(follower.found))
        log.info(
            "watch_resumed",
            heads={source: f.head[0] for source, f in self.followers.items()},
            state=str(state_path),
        )

    # --- following the topics -------------------------------------------------------------

    async def follow_topics(self) -> None:
        consumer = await self._start_consumer()
        self.checks["kafka"] = "ok"
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS, max_records=2000)
                for tp, records in batch.items():
                    follower = self._by_topic[tp.topic]
                    before = follower.events_verified
                    for record in records:
                        if found := follower.take(record.value, tp.partition, record.offset):
                            self._report(found)
                    AUDIT_EVENTS_VERIFIED.labels(follower.source).inc(
                        follower.events_verified - before
                    )
                    if follower.events_verified > before:
                        follower.saved.verified_at = time.time()
                    self._save(follower)
        finally:
            await consumer.stop()

    async def _start_consumer(self) -> AIOKafkaConsumer:
        backoff = 0.5
        while True:
            consumer = AIOKafkaConsumer(
                **self.settings.kafka_client_options(),
                client_id="ipmg-audit-watch",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                request_timeout_ms=15000,
            )
            try:
                await asyncio.wait_for(consumer.start(), 30)
                partitions = await self._partitions(consumer)
                break
            except Exception as error:
                self.checks["kafka"] = f"unavailable: {type(error).__name__}"
                log.warning("watch_kafka_unavailable", error=repr(error), retry_in=backoff)
                with contextlib.suppress(Exception):
                    await consumer.stop()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
        consumer.assign(partitions)
        for tp in partitions:
            offset = self._by_topic[tp.topic].saved.offsets.get(tp.partition)
            if offset is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)
        self._consumer = consumer
        return consumer

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """Every partition of every followed topic; waits for topics not created yet."""
        while True:
            await consumer._client.force_metadata_update()
            missing = [t for t in self._by_topic if not consumer.partitions_for_topic(t)]
            if not missing:
                return [
                    TopicPartition(topic, partition)
                    for topic in self._by_topic
                    for partition in sorted(consumer.partitions_for_topic(topic) or ())
                ]
            self.checks["kafka"] = f"waiting for topics {', '.join(missing)}"
            await asyncio.sleep(1.0)

    async def probe_kafka(self) -> None:
        """Readiness follows the broker. An empty fetch cannot tell a quiet topic from a broker
        that stopped answering, so the topics' ends are asked for on a cadence."""
        while True:
            await asyncio.sleep(KAFKA_PROBE_EVERY_S)
            consumer = self._consumer
            if consumer is None:
                continue  # still starting: ``_start_consumer`` says why
            try:
                await asyncio.wait_for(
                    consumer.end_offsets(list(consumer.assignment())), KAFKA_PROBE_TIMEOUT_S
                )
            except Exception as error:
                if self.checks["kafka"] == "ok":
                    log.warning("watch_kafka_unavailable", error=repr(error))
                self.checks["kafka"] = f"unavailable: {type(error).__name__}"
            else:
                if self.checks["kafka"] != "ok":
                    log.info("watch_kafka_available")
                self.checks["kafka"] = "ok"

    def _caught_up(self, topic: str) -> bool:
        """Whether every partition of ``topic`` has been read to its last known end."""
        consumer = self._consumer
        if consumer is None:
            return False
        for tp in consumer.assignment():
            if tp.topic != topic:
                continue
            end = consumer.highwater(tp)
            if end is None or self._by_topic[topic].read_up_to(tp.partition) < end:
                return False
        return True

    # --- comparing with the stores --------------------------------------------------------

    async def compare_with_stores(self) -> None:
        pools: dict[str, asyncpg.Pool] = {}
        try:
            while True:
                failing = []
                for source, follower in self.followers.items():
                    if follower.found is not None:
                        continue
                    try:
                        if source not in pools:
                            dsn = self.settings.auditor_dsn(source)
                            pools[source] = await create_pool(dsn, self.settings, max_size=1)
                        await self.compare_store(follower, pools[source])
                    except Exception as error:  # a store down or refusing: said, then retried
                        failing.append(f"{source}: {type(error).__name__}")
                        log.warning("watch_store_unavailable", source=source, error=repr(error))
                self.checks["stores"] = (
                    "ok" if not failing else "unavailable: " + ", ".join(failing)
                )
                await asyncio.sleep(self.store_interval_s if not failing else STORE_RETRY_S)
        finally:
            for pool in pools.values():
                await pool.close()

    async def compare_store(self, follower: TopicFollower, pool: asyncpg.Pool) -> None:
        """The store's whole chain and checkpoints, then its agreement with the topic so far.

        The topic's head is taken before the store's: an event on the topic was stored before
        it was published, so a store head behind it is a real break, never a race."""
        source = follower.source
        topic_head, topic_hash = follower.head
        cut = await pool.fetchrow(
            "SELECT (SELECT coalesce(max(position), 0) FROM events) AS head, "
            "(SELECT coalesce(max(published_position), 0) FROM relay_progress) AS published"
        )
        assert cut is not None
        head, published = int(cut["head"]), int(cut["published"])
        verifier = ChainVerifier(source)
        checkpoints = CheckpointCheck(follower.public_keys())
        async for event in EventStore(pool, source, EventRegistry()).iter_json():
            if int(event["position"]) > head:
                break
            checkpoints.feed(event)
            if not verifier.feed(event):
                break
        AUDIT_STORE_HEAD.labels(source).set(head)
        found = verifier.report.first_break or checkpoints.first_break()
        if found is None:
            found = self._disagreement(follower, checkpoints.hashes, head, topic_head, topic_hash)
        behind = self._published_before.get(source, 0) > follower.head[0]
        if found is None and behind and self._caught_up(follower.saved.topic):
            # What the relay had published a whole cadence ago is not on the topic.
            found = ChainBreak(
                follower.head[0] + 1, BreakKind.MISSING, "published but not on the topic"
            )
        self._published_before[source] = published
        if found is not None and follower.found is None:
            row = await pool.fetchrow(
                "SELECT event_id::text AS event_id, stream_id FROM events WHERE position = $1",
                found.position,
            )
            self._report(
                follower.stop_at(
                    found, row["event_id"] if row else None, row["stream_id"] if row else None
                )
            )
            self._save(follower)

    @staticmethod
    def _disagreement(
        follower: TopicFollower,
        stored: dict[int, str],
        head: int,
        topic_head: int,
        topic_hash: str,
    ) -> ChainBreak | None:
        if head < topic_head:
            return ChainBreak(head + 1, BreakKind.EXTRA, "on the topic but not in the store")
        if topic_head and stored.get(topic_head) != topic_hash:
            # Both chains verify, so they differ from the first position whose hashes do.
            recent = follower.saved.recent_hashes
            differs = [p for p in sorted(recent) if p <= topic_head and stored.get(p) != recent[p]]
            position = differs[0] if differs else topic_head
            return ChainBreak(position, BreakKind.DISAGREE, "the store and the topic differ here")
        for position, event in sorted(follower.unchecked_copies.items()):
            if stored.get(position) != event.get("hash"):
                return ChainBreak(position, BreakKind.DISAGREE, "two different events on the topic")
        follower.unchecked_copies.clear()
        return None

    # --- reporting and state --------------------------------------------------------------

    def _report(self, found: WatchBreak) -> None:
        AUDIT_BREAKS.labels(found.source).set(1)
        log.error(
            "audit_break",
            source=found.source,
            position=found.chain_break.position,
            kind=found.chain_break.kind.value,
            detail=found.chain_break.detail,
            event_id=found.event_id,
            stream_id=found.stream_id,
        )

    def _save(self, follower: TopicFollower) -> None:
        saved = follower.to_save()
        streams, hashes, keep_after = follower.saved_changes()
        self.state.save(saved, streams, hashes, keep_after)
        self._expose(follower)

    def _expose(self, follower: TopicFollower) -> None:
        source = follower.source
        AUDIT_VERIFIED_POSITION.labels(source).set(follower.head[0])
        AUDIT_SECONDS_SINCE_VERIFIED.labels(source).set_function(
            lambda: time.time() - (follower.saved.verified_at or self._started)
        )

    def readiness(self) -> dict[str, str]:
        checks = dict(self.checks)
        for source, follower in self.followers.items():
            checks[source] = "ok" if follower.found is None else f"BROKEN: {follower.found}"
        return checks

    # --- the process ----------------------------------------------------------------------

    def http_app(self) -> FastAPI:
        app = FastAPI(title="IPMG Liaison — audit watch", version="0.1.0")
        app.include_router(watch_router(self))
        return app

    async def run(self, host: str, port: int) -> None:
        import uvicorn

        config = uvicorn.Config(
            self.http_app(), host=host, port=port, log_level="warning", loop="asyncio"
        )
        server = uvicorn.Server(config)
        tasks = [
            asyncio.create_task(self.follow_topics()),
            asyncio.create_task(self.compare_with_stores()),
            asyncio.create_task(self.probe_kafka()),
        ]
        try:
            serving = asyncio.create_task(server.serve())
            done, _ = await asyncio.wait([serving, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a task that ended by itself failed: say why
        finally:
            server.should_exit = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.state.close()
            log.info("watch_stopped", heads={s: f.head[0] for s, f in self.followers.items()})


def watch_router(watch: AuditWatch) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "live", "service": "audit-watch"}

    @router.get("/health/ready", response_model=None)
    async def ready() -> Response | dict[str, Any]:
        checks = watch.readiness()
        failing = [name for name, state in checks.items() if state != "ok"]
        if failing:
            return problem(
                503,
                "Not ready",
                f"not ok: {', '.join(failing)}",
                headers={"Retry-After": "2"},
                checks=checks,
            )
        return {"status": "ready", "service": "audit-watch", "checks": checks}

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
