"""Kafka authentication and ACLs on a real broker: SASL/SCRAM-SHA-512 and the KRaft
StandardAuthorizer, with the principals and rules of ``ipmg_shared.kafka_acls`` written by the
same code the compose ``migrate`` job runs (``ipmg kafka users apply``, ``ipmg kafka acls
apply``). Each service principal can do what its rules allow and is refused the rest.

A broker of this module's own (deploy/local/kafka.sh with an admin password): the shared
development broker stays PLAINTEXT. It failing to start is a failure, never a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from asyncio.subprocess import PIPE, STDOUT
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)
from pydantic import SecretStr

from ipmg_meetings.main import service as meetings_service
from ipmg_shared.db import create_pool
from ipmg_shared.envelope import Envelope
from ipmg_shared.kafka_acls import (
    ADMIN_PRINCIPAL,
    USERS,
    AclRule,
    Operation,
    ResourceType,
    acl_rules,
    service_principal,
)
from ipmg_shared.kafka_admin import apply_acls, create_acls, service_acls
from ipmg_shared.kafka_reader import read_topic
from ipmg_shared.relay import make_producer
from ipmg_shared.runtime import make_broker
from ipmg_shared.settings import Settings
from ipmg_shared.store import EventStore
from ipmg_shared.topics import ensure_topics
from tests.support.processes import IPMG, PrivateKafka, private_kafka, running_service
from tests.support.sample_events import REGISTRY, SECRETARIAT, notes
from tests.support.waiting import wait_until

pytestmark = pytest.mark.infra

ADMIN_PASSWORD = secrets.token_hex(16)
PASSWORDS = {user: secrets.token_hex(16) for user in USERS}
SEND_TIMEOUT_S = 20


@pytest.fixture(scope="module")
def secured_broker() -> Iterator[PrivateKafka]:
    with private_kafka(admin_password=ADMIN_PASSWORD) as broker:
        yield broker


@pytest.fixture(scope="module")
async def admin(
    secured_broker: PrivateKafka, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """The administrator's settings, after topics, users and ACLs were set up by the commands
    the compose ``migrate`` job runs, with the passwords as secret files."""
    admin = settings.model_copy(
        update={
            "kafka_bootstrap_servers": secured_broker.bootstrap,
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_username": ADMIN_PRINCIPAL,
            "kafka_sasl_password": SecretStr(ADMIN_PASSWORD),
            "topic_prefix": f"acl-{uuid4().hex[:6]}.",
        }
    )
    secrets_dir = tmp_path_factory.mktemp("secrets")
    for service, password in PASSWORDS.items():
        (secrets_dir / f"kafka_{service}_password").write_text(password + "\n")
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": admin.kafka_bootstrap_servers,
        "IPMG_TOPIC_PREFIX": admin.topic_prefix,
        "IPMG_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "IPMG_KAFKA_SASL_USERNAME": ADMIN_PRINCIPAL,
        "IPMG_KAFKA_SASL_PASSWORD": ADMIN_PASSWORD,
    }
    await ensure_topics(admin)  # `ipmg topics create`, tested elsewhere
    for command in (
        ["kafka", "users", "apply", "--passwords-dir", str(secrets_dir)],
        ["kafka", "acls", "apply"],
    ):
        process = await asyncio.create_subprocess_exec(
            str(IPMG), *command, env=env, stdout=PIPE, stderr=STDOUT
        )
        output, _ = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, f"ipmg {' '.join(command)}: {output.decode()}"
    return admin


def as_service(admin: Settings, service: str, password: str | None = None) -> Settings:
    return admin.model_copy(
        update={
            "kafka_sasl_username": service_principal(service),
            "kafka_sasl_password": SecretStr(password or PASSWORDS[service]),
        }
    )


@contextlib.asynccontextmanager
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    # As the relay and the dead-letter path produce: idempotent, acks=all.
    client = AIOKafkaProducer(
        **settings.kafka_client_options(), acks="all", enable_idempotence=True
    )
    try:
        await asyncio.wait_for(client.start(), 30)
        yield client
    finally:
        await client.stop()


async def send(client: AIOKafkaProducer, topic: str) -> None:
    await asyncio.wait_for(client.send_and_wait(topic, b"{}", key=b"k"), SEND_TIMEOUT_S)


async def test_the_broker_holds_exactly_the_rules_and_applying_again_changes_nothing(
    admin: Settings,
) -> None:
    assert await service_acls(admin) == acl_rules(admin.topics)
    assert await apply_acls(admin) == ([], [])


async def test_a_rule_the_code_does_not_state_is_removed(admin: Settings) -> None:
    topics = admin.topics
    stray = AclRule(
        service_principal("meetings"),
        ResourceType.TOPIC,
        topics.events("resolutions"),
        Operation.WRITE,
    )
    await create_acls(admin, [stray])
    async with producer(as_service(admin, "meetings")) as client:
        await eventually_sent(client, topics.events("resolutions"))
        assert await apply_acls(admin) == ([], [stray])
        await eventually_refused(client, topics.events("resolutions"))


async def eventually_sent(client: AIOKafkaProducer, topic: str) -> None:
    # A new ACL reaches the authorizer through the metadata log: moments, not at once.
    for _ in range(50):
        with contextlib.suppress(TopicAuthorizationFailedError):
            await send(client, topic)
            return
        await asyncio.sleep(0.2)
    await send(client, topic)


async def eventually_refused(client: AIOKafkaProducer, topic: str) -> None:
    for _ in range(50):
        try:
            await send(client, topic)
        except TopicAuthorizationFailedError:
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"still allowed to write {topic}")


@pytest.mark.parametrize("source", ["meetings", "resolutions", "notifications"])
async def test_a_write_service_writes_its_own_topic_and_is_refused_the_others(
    admin: Settings, source: str
) -> None:
    topics = admin.topics
    async with producer(as_service(admin, source)) as client:
        await send(client, topics.events(source))
        for other in {"meetings", "resolutions", "notifications"} - {source}:
            with pytest.raises(TopicAuthorizationFailedError):
                await send(client, topics.events(other))
        with pytest.raises(TopicAuthorizationFailedError):
            await send(client, topics.retry(source))


async def test_meetings_consumes_nothing_so_it_may_not_dead_letter(admin: Settings) -> None:
    async with producer(as_service(admin, "meetings")) as client:
        with pytest.raises(TopicAuthorizationFailedError):
            await send(client, admin.topics.dead_letter)


async def test_a_wrong_password_or_an_unknown_user_is_refused(
    admin: Settings, secured_broker: PrivateKafka
) -> None:
    broker_log = secured_broker.state_dir / "kafka" / "kafka.log"
    refusals_before = broker_log.read_text().count("invalid credentials")
    for settings in (
        as_service(admin, "meetings", password="not-the-password"),
        admin.model_copy(update={"kafka_sasl_username": "ipmg-intruder"}),
    ):
        client = AIOKafkaProducer(**settings.kafka_client_options(), request_timeout_ms=5000)
        # aiokafka reports a refused SASL handshake as "unable to bootstrap".
        with pytest.raises(KafkaConnectionError):
            await asyncio.wait_for(client.start(), 30)
        await client.stop()
    # The broker says why: the credentials, for each of the two.
    assert broker_log.read_text().count("invalid credentials") >= refusals_before + 2


async def test_plaintext_is_not_spoken_at_all(admin: Settings) -> None:
    settings = admin.model_copy(update={"kafka_security_protocol": "PLAINTEXT"})
    client = AIOKafkaProducer(**settings.kafka_client_options(), request_timeout_ms=5000)
    with pytest.raises((KafkaConnectionError, asyncio.TimeoutError)):
        await asyncio.wait_for(client.start(), 15)
    await client.stop()


async def test_reporting_writes_nothing_of_the_record_but_reads_it_in_its_own_group(
    admin: Settings,
) -> None:
    topics = admin.topics
    reporting = as_service(admin, "reporting")
    async with producer(reporting) as client:
        for topic in [*(topics.events(s) for s in ("meetings", "resolutions", "notifications"))]:
            with pytest.raises(TopicAuthorizationFailedError):
                await send(client, topic)
        with pytest.raises(TopicAuthorizationFailedError):
            await send(client, topics.retry("reporting"))
        await send(client, topics.dead_letter)  # what it cannot process goes there

    async with producer(as_service(admin, "meetings")) as client:
        await send(client, topics.events("meetings"))
    consumer = AIOKafkaConsumer(
        topics.events("meetings"),
        **reporting.kafka_client_options(),
        group_id=topics.group("reporting"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await asyncio.wait_for(consumer.start(), 30)
    try:
        batch = await consumer.getmany(timeout_ms=10_000)
        assert sum(len(records) for records in batch.values()) >= 1
        await consumer.commit()
    finally:
        await consumer.stop()


async def test_the_viewer_reads_but_writes_nothing(admin: Settings) -> None:
    viewer = as_service(admin, "viewer")
    async with producer(as_service(admin, "notifications")) as client:
        await send(client, admin.topics.events("notifications"))
    assert [r async for r in read_topic(viewer, admin.topics.events("notifications"))]
    # With WRITE on no topic at all, even the idempotent producer's id is refused.
    with pytest.raises(ClusterAuthorizationFailedError):
        async with producer(viewer):
            pass


async def test_a_consumer_may_not_join_another_services_group(admin: Settings) -> None:
    topics = admin.topics
    consumer = AIOKafkaConsumer(
        topics.events("meetings"),
        **as_service(admin, "reporting").kafka_client_options(),
        group_id=topics.group("resolutions"),
        auto_offset_reset="earliest",
    )
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            await asyncio.wait_for(consumer.start(), 30)
    finally:
        await consumer.stop()


async def start_and_read(consumer: AIOKafkaConsumer) -> None:
    await consumer.start()
    await consumer.getone()


async def test_a_consumer_may_not_read_what_it_does_not_consume(admin: Settings) -> None:
    topics = admin.topics
    consumer = AIOKafkaConsumer(
        topics.retry("reporting"),
        **as_service(admin, "resolutions").kafka_client_options(),
        group_id=topics.group("resolutions"),
        auto_offset_reset="earliest",
    )
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(start_and_read(consumer), 40)
    finally:
        await consumer.stop()


async def test_the_projects_own_clients_authenticate_with_their_principal(
    admin: Settings,
) -> None:
    """The relay's producer, the FastStream broker and the topic reader, as each service uses
    them, with nothing but the settings."""
    topics = admin.topics
    relay_producer = make_producer(as_service(admin, "resolutions"), "ipmg-resolutions-relay")
    await relay_producer.start()
    try:
        await asyncio.wait_for(
            relay_producer.send_and_wait(topics.events("resolutions"), b"relay", key=b"r"), 20
        )
    finally:
        await relay_producer.stop()

    received: asyncio.Queue[bytes] = asyncio.Queue()
    broker = make_broker(as_service(admin, "notifications"), "ipmg-notifications")

    @broker.subscriber(
        topics.events("resolutions"),
        group_id=topics.group("notifications"),
        auto_offset_reset="earliest",
    )
    async def on_message(body: bytes) -> None:  # the services' broker injects nothing
        await received.put(body)

    async with broker:
        await asyncio.wait_for(broker.start(), 30)
        assert await broker.ping(5)
        while await asyncio.wait_for(received.get(), 30) != b"relay":
            pass  # earlier tests' records come first
        # Its dead-letter path publishes through the same broker, as the consumer runner does.
        await broker.publish(b"{}", topic=topics.dead_letter, key=b"r")
        with pytest.raises(TopicAuthorizationFailedError):
            await broker.publish(b"{}", topic=topics.events("meetings"), key=b"r")

    # `ipmg dlq list` reads dead letters as the administrator; no service may.
    assert [r async for r in read_topic(admin, topics.dead_letter)]
    with pytest.raises(TopicAuthorizationFailedError):
        async for _ in read_topic(as_service(admin, "reporting"), topics.dead_letter):
            pass


async def test_a_service_process_publishes_its_store_as_its_own_principal(
    admin: Settings, postgres: Settings, tmp_path: Path
) -> None:
    """`ipmg meetings run` with only IPMG_KAFKA_* settings: ready, and its relay publishes."""
    settings = admin.model_copy(
        update={
            "database_url": postgres.database_url,
            "database_prefix": f"{postgres.database_prefix}acl_",
        }
    )
    await meetings_service.migrate(settings)
    pool = await create_pool(settings.service_dsn("meetings"), settings, max_size=2)
    try:
        store = EventStore(pool, "meetings", REGISTRY)
        for i in range(3):
            await store.append(
                f"note-{i}", None, notes(f"n{i}"), actor=SECRETARIAT, correlation_id=uuid4()
            )
        with running_service(
            "meetings",
            settings,
            tmp_path,
            IPMG_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
            IPMG_KAFKA_SASL_USERNAME=service_principal("meetings"),
            IPMG_KAFKA_SASL_PASSWORD=PASSWORDS["meetings"],
        ) as service:
            service.wait_ready()

            async def all_published() -> bool:
                value = await pool.fetchval(
                    "SELECT coalesce(max(published_position), 0) FROM relay_progress"
                )
                return int(value or 0) >= 3

            await wait_until(all_published, timeout=60)
    finally:
        await pool.close()
    records = [
        r
        async for r in read_topic(
            as_service(admin, "reporting"), settings.topics.events("meetings")
        )
    ]
    positions = {Envelope.from_bytes(r.value).position for r in records if r.value != b"{}"}
    assert positions >= {1, 2, 3}
