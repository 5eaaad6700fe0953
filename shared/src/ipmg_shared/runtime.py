"""Wiring of one service process: database pool, Kafka broker (FastStream), relay, consumers,
and the HTTP app with health, metrics and problem details. Each service hands in a
``ServiceDefinition``; this module knows no service by name."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import asyncpg
from aiokafka import TopicPartition
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.middlewares import AckPolicy
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ipmg_shared.api_docs import install_offline_docs
from ipmg_shared.asyncapi import asyncapi_document
from ipmg_shared.audit import write_checkpoint
from ipmg_shared.checkpoints import SYSTEM_EVENTS, Keyring, KeyUnavailable
from ipmg_shared.consumer import (
    ConsumerRunner,
    DeadLetter,
    Delivery,
    Outcome,
    Subscription,
    dead_letter_headers,
)
from ipmg_shared.db import Migration, create_pool
from ipmg_shared.events import EventRegistry
from ipmg_shared.guards import public
from ipmg_shared.http_metrics import instrument_http
from ipmg_shared.logging import get_logger
from ipmg_shared.metrics import CONSUMER_LAG
from ipmg_shared.problems import BodySizeLimit, install_problem_handlers, problem
from ipmg_shared.relay import Relay
from ipmg_shared.settings import Settings, TopicNames
from ipmg_shared.store import EventStore

log = get_logger("ipmg.runtime")
READINESS_TIMEOUT_S = 2.0
RETRY_LATER_PAUSE_S = 1.0
# A Kafka offset commit costs a round trip to the group coordinator (~10 ms here), several times
# the cost of applying an event. The database checkpoint is what makes delivery effectively
# once, so offsets are committed every so many messages or so much time: after a crash, at most
# that many already-applied messages come again, and the stream versions skip them.
COMMIT_EVERY_MESSAGES = 100
COMMIT_EVERY_S = 0.5
# Records already fetched are applied together, in one transaction, up to this many: enough to
# spread the commit's cost, few enough that the first of them is not held back for long.
CONSUMER_BATCH_MAX = 50
# A gathering consumer's fetch waits for this much or its ``gather_ms``, whichever comes first:
# more than a busy moment brings, half of what one fetch of a backlog brings (aiokafka's
# ``max_partition_fetch_bytes``, 1 MiB), so a backlog is answered at once.
GATHER_MIN_BYTES = 512 * 1024
# aiokafka's defaults, for consumers that take each record as soon as the broker has it.
FETCH_MIN_BYTES = 1
FETCH_MAX_WAIT_MS = 500


@dataclass
class ServiceContext:
    """What a running service's adapters share; handed to routers via ``request.app.state``."""

    name: str
    settings: Settings
    pool: asyncpg.Pool
    broker: KafkaBroker
    store: EventStore | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceDefinition:
    """What a service contributes; found through the ``ipmg.services`` entry-point group."""

    name: str
    migrations: Callable[[], Sequence[Migration]]
    registry: EventRegistry | None = None  # set for services that own an event store
    append_only_tables: tuple[str, ...] = ()
    routers: Callable[[], Sequence[APIRouter]] = tuple
    subscriptions: Callable[[ServiceContext], Sequence[Subscription]] = lambda _: ()
    cli: Any = None  # a typer.Typer with the service's own sub-commands
    on_start: Callable[[ServiceContext], Any] | None = None  # extra background work
    # Its own secrets' problems (ipmg_shared.secrets); refused at start outside development.
    secret_problems: Callable[[Settings], list[str]] | None = None
    # Extra asyncpg.create_pool options, e.g. {"server_settings": {"search_path": "live,public"}}.
    pool_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def owns_event_store(self) -> bool:
        return self.registry is not None

    async def migrate(self, settings: Settings) -> list[str]:
        """Its database and role made if missing, then its new migrations applied (names)."""
        from ipmg_shared.db import apply_migrations, provision_service_database

        await provision_service_database(settings, self.name)
        return await apply_migrations(
            settings, self.name, self.migrations(), self.append_only_tables
        )


def make_broker(settings: Settings, client_id: str) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=broker_security(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=int(settings.kafka_send_timeout_s * 1000),
        logger=None,
        # No dependency injection: a handler is called with what the subscriber's decoder
        # returns (``subscribe``: the message itself). FastStream's injection resolves a
        # ``KafkaMessage`` parameter in a worker thread, one thread hop per message.
        apply_types=False,
    )


def broker_security(settings: Settings) -> BaseSecurity | None:
    """FastStream takes security as an object: the same options as every aiokafka client."""
    options = settings.kafka_client_options()
    if options["security_protocol"] == "PLAINTEXT":
        return None
    kind = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}
    return kind[options["sasl_mechanism"]](
        options["sasl_plain_username"],
        options["sasl_plain_password"],
        ssl_context=options.get("ssl_context"),
        use_ssl=options["security_protocol"] == "SASL_SSL",
    )


def subscribe(
    broker: KafkaBroker, runner: ConsumerRunner, settings: Settings
) -> list[HandledOffsets]:
    """A FastStream subscriber per consumer, or per topic: manual ack after the database commit.

    FastStream's default ACK_FIRST would commit before handling (at-most-once); with MANUAL,
    ``ack`` commits exactly what was processed: the record handed over and those taken with it
    (``_already_fetched``). Subscribers of one consumer share its group, so its committed
    offsets do not depend on the split. Returns each subscriber's offsets, to be stopped with
    the broker (``HandledOffsets.stop``).
    """
    topics = runner.subscription.topics
    handled_offsets = []
    for subscribed in (
        [[topic] for topic in topics] if runner.subscription.consumer_per_topic else [topics]
    ):
        handled = HandledOffsets()  # of this subscriber: an ack commits its own offsets
        handled_offsets.append(handled)
        broker.subscriber(
            *subscribed,
            group_id=settings.topics.group(runner.consumer),
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            max_poll_interval_ms=300_000,
            # A member learns of a rebalance from its next heartbeat: with a consumer per topic
            # every start rebalances once per member, so each waits 1 s, not aiokafka's 3 s.
            heartbeat_interval_ms=1000,
            decoder=_whole_message,
            **fetch_options(runner.subscription),
        )(_message_handler(runner, handled))
    return handled_offsets


class FetchOptions(TypedDict):
    fetch_min_bytes: int
    fetch_max_wait_ms: int


def fetch_options(subscription: Subscription) -> FetchOptions:
    """Kafka's own batching: the broker answers a fetch once it has ``fetch_min_bytes`` for
    it, or after ``fetch_max_wait_ms`` with what it has (nothing, on an idle topic)."""
    if subscription.gather_ms <= 0:
        return FetchOptions(fetch_min_bytes=FETCH_MIN_BYTES, fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    return FetchOptions(fetch_min_bytes=GATHER_MIN_BYTES, fetch_max_wait_ms=subscription.gather_ms)


def _message_handler(
    runner: ConsumerRunner, handled: HandledOffsets
) -> Callable[[KafkaMessage], Awaitable[None]]:
    async def on_message(message: KafkaMessage) -> None:
        kafka_consumer: Any = message.consumer
        records = [message.raw_message, *await _already_fetched(kafka_consumer)]
        deliveries = [_delivery_of(record) for record in records]
        try:
            outcomes = await runner.process_batch(deliveries)
        except Exception as error:  # e.g. the dead-letter publish failed: take them all again
            log.warning("consumer_retry_later", error=repr(error))
            outcomes = [Outcome.RETRY_LATER]
        if outcomes[-1] is Outcome.RETRY_LATER:
            handled.add(records[: len(outcomes) - 1])
            await asyncio.sleep(RETRY_LATER_PAUSE_S)
            # Back to the first record not handled; those before it commit with the next ack.
            await _take_again(message, records[len(outcomes) - 1 :])
            return
        handled.add(records)
        if handled.ack_due():
            await message.ack()  # commits every record consumed so far, these included
            handled.committed()
        else:
            handled.commit_once_idle(kafka_consumer)
        _observe_lag(runner.consumer, kafka_consumer, records)

    return on_message


class HandledOffsets:
    """Per partition, the offset after the last record handled and not yet committed.

    Offsets commit with a record's ack, every so many records or so much time; after a burst,
    the last of them would wait for the next record, and Kafka's own lag tools would show an
    idle consumer behind. So they are committed once no record came for a while. Only these
    explicit offsets, never the client's position, which may be past a record fetched but not
    yet applied.
    """

    def __init__(self) -> None:
        self.next_offsets: dict[TopicPartition, int] = {}
        self._uncommitted = 0
        self._last_commit = 0.0
        self._last_added = 0.0
        self._committing: asyncio.Task[None] | None = None
        self._stopped = False

    def add(self, records: Sequence[Any]) -> None:
        for record in records:
            self.next_offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
        self._uncommitted += len(records)
        self._last_added = time.monotonic()

    def ack_due(self) -> bool:
        return (
            self._uncommitted >= COMMIT_EVERY_MESSAGES
            or self._last_added - self._last_commit >= COMMIT_EVERY_S
        )

    def committed(self) -> None:
        self.next_offsets.clear()
        self._uncommitted, self._last_commit = 0, self._last_added

    def commit_once_idle(self, kafka_consumer: Any) -> None:
        if self._stopped or kafka_consumer is None:
            return
        if self._committing is None or self._committing.done():
            self._committing = asyncio.create_task(self._commit_once_idle(kafka_consumer))

    def stop(self) -> None:
        """Its consumer has stopped: no commit any more. aiokafka still commits through a
        stopped consumer, so a late one would overwrite offsets set since (an operator's
        reset, or what the consumer's next run committed); the next run's acks commit."""
        self._stopped = True
        self.next_offsets.clear()
        if self._committing is not None:
            self._committing.cancel()

    async def _commit_once_idle(self, kafka_consumer: Any) -> None:
        while self.next_offsets:
            idle_for = time.monotonic() - self._last_added
            if idle_for < COMMIT_EVERY_S:  # records still coming: their acks commit
                await asyncio.sleep(COMMIT_EVERY_S - idle_for)
                continue
            pending, self.next_offsets = self.next_offsets, {}
            try:
                await _commit_explicitly(kafka_consumer, pending)
            except Exception as error:  # a rebalance, Kafka away: the next ack commits them
                log.info("consumer_idle_commit_deferred", error=repr(error))


async def _commit_explicitly(kafka_consumer: Any, offsets: dict[TopicPartition, int]) -> None:
    # Only where the client has returned nothing beyond: a partition taken away by a
    # rebalance, and perhaps given back since, has moved on without these.
    assigned = kafka_consumer.assignment()
    current = {
        partition: offset
        for partition, offset in offsets.items()
        if partition in assigned and await kafka_consumer.position(partition) == offset
    }
    if current:
        await kafka_consumer.commit(current)


async def _already_fetched(kafka_consumer: Any) -> list[Any]:
    """The records the client holds already, without waiting: they go into the same batch.

    FastStream hands over one record at a time, as soon as it arrives (no batching delay when
    traffic is light); under load, the records behind it are fetched by then.
    """
    if kafka_consumer is None:
        return []
    try:
        fetched = await kafka_consumer.getmany(timeout_ms=0, max_records=CONSUMER_BATCH_MAX - 1)
    except Exception as error:  # e.g. a rebalance under way: the record in hand goes alone
        log.info("consumer_fetch_deferred", error=repr(error))
        return []
    return [record for partition_records in fetched.values() for record in partition_records]


def _delivery_of(record: Any) -> Delivery:
    return Delivery(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value or b"",
        headers=tuple(record.headers or ()),
    )


async def _take_again(message: KafkaMessage, records: Sequence[Any]) -> None:
    """Each partition sought back to its first record among these, so they come again."""
    kafka_consumer: Any = message.consumer
    if kafka_consumer is None:  # no client to seek: FastStream's nack takes all back
        await message.nack()
        return
    first: dict[TopicPartition, int] = {}
    for record in records:
        first.setdefault(TopicPartition(record.topic, record.partition), record.offset)
    for partition, offset in first.items():
        kafka_consumer.seek(partition, offset)


async def _whole_message(message: Any) -> Any:
    # The handler takes the message: its record, its consumer and its ack. Bytes go to the
    # runner untouched: decoding (and rejecting) them is its job, not FastStream's.
    return message


def _observe_lag(consumer: str, kafka_consumer: Any, records: Sequence[Any]) -> None:
    highwater = getattr(kafka_consumer, "highwater", None)
    if highwater is None:
        return
    last = {(record.topic, record.partition): record.offset for record in records}
    for (topic, partition), offset in last.items():
        end = highwater(TopicPartition(topic, partition))
        if end is not None:
            CONSUMER_LAG.labels(consumer, topic, str(partition)).set(max(end - offset - 1, 0))


def dead_letter_sink(
    broker: KafkaBroker, topics: TopicNames
) -> Callable[[Delivery, DeadLetter, str], Any]:
    async def send(delivery: Delivery, letter: DeadLetter, consumer: str) -> None:
        await broker.publish(
            delivery.value,
            topic=topics.dead_letter,
            key=delivery.key,
            headers=dead_letter_headers(delivery, letter, consumer),
        )

    return send


class ServiceRuntime:
    def __init__(self, definition: ServiceDefinition, settings: Settings) -> None:
        self.definition = definition
        self.settings = settings
        self.broker = make_broker(settings, f"ipmg-{definition.name}")
        self.context: ServiceContext | None = None
        self.relay: Relay | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._handled_offsets: list[HandledOffsets] = []
        self.broker_started = False

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        settings = self.settings
        dsn = settings.service_dsn(self.definition.name)
        # min_size=0: the process starts and reports "not ready" while PostgreSQL is down.
        pool = await create_pool(dsn, settings, min_size=0, **self.definition.pool_options)
        context = ServiceContext(self.definition.name, settings, pool, self.broker)
        if self.definition.registry is not None:
            context.store = EventStore(
                pool,
                self.definition.name,
                self.definition.registry.merge(SYSTEM_EVENTS),
                acquire_timeout_s=settings.pool_acquire_timeout_s,
            )
            self.relay = Relay(settings, dsn, self.definition.name)
            self._tasks.append(asyncio.create_task(self.relay.run(), name="relay"))
            self._tasks.append(
                asyncio.create_task(self._sign_checkpoints(context.store), name="checkpoints")
            )
        sink = dead_letter_sink(self.broker, settings.topics)
        for subscription in self.definition.subscriptions(context):
            runner = ConsumerRunner(
                subscription, pool, sink, acquire_timeout_s=settings.pool_acquire_timeout_s
            )
            self._handled_offsets += subscribe(self.broker, runner, settings)
        self.context = context
        app.state.context = context
        self._tasks.append(asyncio.create_task(self._keep_broker_started(), name="broker"))
        if self.definition.on_start is not None:
            self._tasks.append(asyncio.create_task(self._run_on_start(context), name="on_start"))
        log.info("service_started", service=self.definition.name)
        try:
            yield
        finally:
            log.info("service_stopping", service=self.definition.name)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            # Stopping the broker lets the message in hand finish; its offset commits only
            # after its database transaction, so an abandoned one is simply delivered again.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.broker.stop(), 15)
            for handled in self._handled_offsets:
                handled.stop()
            await asyncio.wait_for(pool.close(), 15)
            log.info("service_stopped", service=self.definition.name)

    async def _run_on_start(self, context: ServiceContext) -> None:
        assert self.definition.on_start is not None
        try:
            await self.definition.on_start(context)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Background work of the service stopped: say so loudly, readiness stays honest.
            log.exception("background_work_failed", service=self.definition.name)
            raise

    async def _sign_checkpoints(self, store: EventStore) -> None:
        """Sign the chain head on a schedule, when it moved since the last checkpoint."""
        keyring = Keyring(self.settings.keys_dir)
        signed_up_to = -1
        while True:
            await asyncio.sleep(self.settings.checkpoint_interval_s)
            try:
                position, _ = await store.head()
                if position > signed_up_to + 1:  # +1: the last checkpoint itself
                    result = await write_checkpoint(store, keyring)
                    signed_up_to = result.last_position if result else signed_up_to
            except KeyUnavailable as missing:
                log.warning("checkpoint_skipped", reason=str(missing))
            except Exception as error:
                log.warning("checkpoint_failed", error=repr(error))

    async def _keep_broker_started(self) -> None:
        """FastStream's start fails while Kafka is down: retry with backoff until it starts."""
        backoff = 0.5
        while not self.broker_started:
            try:
                await asyncio.wait_for(self.broker.start(), 30)
                self.broker_started = True
                log.info("broker_started", service=self.definition.name)
            except Exception as error:
                log.warning("broker_start_failed", error=repr(error), retry_in=backoff)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.broker.stop(), 5)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        context = self.context
        try:
            assert context is not None
            async with context.pool.acquire(timeout=READINESS_TIMEOUT_S) as connection:
                await asyncio.wait_for(connection.fetchval("SELECT 1"), READINESS_TIMEOUT_S)
            checks["database"] = "ok"
        except Exception as error:
            checks["database"] = f"unavailable: {type(error).__name__}"
        kafka_ok = self.broker_started and await self.broker.ping(READINESS_TIMEOUT_S)
        checks["kafka"] = "ok" if kafka_ok else "unavailable"
        return checks

    def http_app(self, extra_routers: Sequence[APIRouter] = ()) -> FastAPI:
        name = self.definition.name
        app = FastAPI(
            title=f"IPMG Liaison — {name}",
            version="0.1.0",
            lifespan=self.lifespan,
            description=f"The {name} service of IPMG Liaison.",
            docs_url=None,  # served from the package's own assets below
            redoc_url=None,
        )
        install_offline_docs(app)
        app.state.settings = self.settings
        app.state.runtime = self
        install_problem_handlers(app)
        app.add_middleware(BodySizeLimit, max_bytes=self.settings.max_request_bytes)
        instrument_http(app)
        app.include_router(health_router(self))
        for router in [*self.definition.routers(), *extra_routers]:
            app.include_router(router)
        return app


def health_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter(tags=["operations"], dependencies=[Depends(public())])

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "live", "service": runtime.definition.name}

    @router.get("/health/ready", response_model=None)
    async def ready(request: Request) -> Response | dict[str, Any]:
        checks = await runtime.readiness()
        failing = [name for name, state in checks.items() if state != "ok"]
        if failing:
            return problem(
                503,
                "Not ready",
                f"unavailable: {', '.join(failing)}",
                headers={"Retry-After": "2"},
                checks=checks,
            )
        return {"status": "ready", "service": runtime.definition.name, "checks": checks}

    @router.get("/asyncapi.json", summary="The AsyncAPI document of this service's topic")
    async def asyncapi() -> dict[str, Any]:
        name = runtime.definition.name
        registry = runtime.definition.registry
        settings = runtime.settings
        registries = {} if registry is None else {name: registry.merge(SYSTEM_EVENTS)}
        return asyncapi_document(
            registries,
            settings.topics,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            partitions=settings.topic_partitions,
            replicas=settings.topic_replication_factor,
            consumers=(name,),
        )

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
