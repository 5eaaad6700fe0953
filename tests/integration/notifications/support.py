"""A small world for the notifications service's integration tests.

- a real SMTP server (aiosmtpd, in its own thread) that counts what it receives, and can be
  stopped and started again on the same port;
- a real HTTP receiver for webhooks (asyncio streams) that records each signed post;
- the upstream write services as their event stores and relays (in databases and topics of
  the test's own), fed through the meetings and resolutions domains' own ``decide``;
- the notifications service run in-process exactly as ``ipmg notifications run`` wires it
  (``ServiceRuntime`` with its relay, consumer, delivery worker and reminder scheduler);
- a clock that runs with real time from a chosen day, and can be moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI

from ipmg_meetings import domain as meetings
from ipmg_notifications.main import build_service
from ipmg_notifications.settings import NotificationSettings
from ipmg_resolutions import domain as resolutions
from ipmg_shared.actors import Actor, Role, Unit
from ipmg_shared.db import (
    create_pool,
    init_connection,
)
from ipmg_shared.events import DomainEvent
from ipmg_shared.relay import Relay
from ipmg_shared.runtime import ServiceRuntime
from ipmg_shared.settings import Settings
from ipmg_shared.store import EventStore, NewEvent
from ipmg_shared.topics import ensure_topics
from tests.support.databases import fresh_service_database
from tests.support.processes import free_port
from tests.support.waiting import wait_until

PAKISTAN = ZoneInfo("Asia/Karachi")
SECRETARIAT = Actor(subject="secretariat@ncsw.example.org", unit=Unit.NCSW, role=Role.SECRETARIAT)
WEBHOOK_SECRET = "test-webhook-secret"
State = TypeVar("State")


# --- time ---------------------------------------------------------------------------------


class MovableClock:
    """Real time, shifted so that it is noon in Pakistan on a chosen day; ``move_to`` jumps."""

    def __init__(self, day: date) -> None:
        self.offset = timedelta()
        self.move_to(day)

    def move_to(self, day: date) -> None:
        self.offset = datetime.combine(day, time(12), PAKISTAN) - datetime.now(UTC)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def today(self) -> date:
        return self().astimezone(PAKISTAN).date()


def mid_quarter(day: date) -> date:
    """The 15th of the middle month of ``day``'s quarter: far from any quarter's digest."""
    return date(day.year, 3 * ((day.month - 1) // 3) + 2, 15)


# --- SMTP ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMail:
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def kind(self) -> str:
        return str(self.message["X-IPMG-Kind"])

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None
        return str(body.get_content())

    @property
    def html(self) -> str:
        body = self.message.get_body(("html",))
        assert body is not None
        return str(body.get_content())


class RecordingSmtpHandler:
    def __init__(self) -> None:
        self.mails: list[ReceivedMail] = []
        self.delay_s = 0.0  # a slow server: messages stay in flight this long

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay_s)
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.mails.append(ReceivedMail(tuple(str(r) for r in envelope.rcpt_tos), message))
        return "250 Message accepted"


class SmtpServer:
    """A real SMTP server on a port of its own; stopping it refuses connections."""

    def __init__(self) -> None:
        self.port = free_port()
        self.handler = RecordingSmtpHandler()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def mails(self) -> list[ReceivedMail]:
        return list(self.handler.mails)

    def count_by_address(self, *, kind: str | None = None) -> Counter[str]:
        return Counter(
            address
            for mail in self.mails
            if kind is None or mail.kind == kind
            for address in mail.recipients
        )


# --- webhooks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookPost:
    path: str
    headers: dict[str, str]
    body: bytes

    def document(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


@dataclass
class WebhookReceiver:
    """A minimal HTTP/1.1 server that answers 200 to every POST and keeps what it got."""

    posts: list[WebhookPost] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def url(self, unit: Unit) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{unit.value}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode().split()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.posts.append(WebhookPost(request_line[1], headers, body))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()


# --- the member directory -----------------------------------------------------------------


def write_directory(path: Path, webhooks: dict[Unit, str]) -> Path:
    """The packaged directory, with webhooks for some units; returns the file's path."""
    document = json.loads(
        resources.files("ipmg_notifications").joinpath("directory.json").read_text()
    )
    for entry in document["units"]:
        entry["webhook_url"] = webhooks.get(Unit(entry["unit"]))
    path.write_text(json.dumps(document, indent=2))
    return path


def directory_people(path: Path) -> list[dict[str, str]]:
    """Every person of the directory file, with their unit (read independently of the code)."""
    document = json.loads(path.read_text())
    return [
        {**person, "unit": entry["unit"]}
        for entry in document["units"]
        for person in entry["people"]
    ]


# --- upstream write services --------------------------------------------------------------


class Upstream:
    """The meetings and resolutions stores, fed by their domains and published by relays."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.clock = clock
        self.stores: dict[str, EventStore] = {}
        self._pools: list[asyncpg.Pool] = []
        self._relays: list[asyncio.Task[None]] = []
        self.relays: dict[str, Relay] = {}

    async def start(self) -> None:
        registries = {"meetings": meetings.REGISTRY, "resolutions": resolutions.REGISTRY}
        for source, registry in registries.items():
            await fresh_service_database(self.settings, source)
            pool = await create_pool(self.settings.service_dsn(source), self.settings, max_size=4)
            self._pools.append(pool)
            self.stores[source] = EventStore(pool, source, registry, clock=self.clock)
            relay = Relay(self.settings, self.settings.service_dsn(source), source)
            self.relays[source] = relay
            self._relays.append(asyncio.create_task(relay.run()))

    async def stop(self) -> None:
        for task in self._relays:
            task.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)
        for pool in self._pools:
            await pool.close()

    async def _run(
        self,
        source: str,
        stream_id: str,
        initial: State,
        evolve: Callable[[State, DomainEvent], State],
        decide: Callable[[State], list[DomainEvent]],
    ) -> None:
        store = self.stores[source]
        state, version = await store.load(stream_id, initial, evolve)
        events = decide(state)
        await store.append(
            stream_id,
            version,
            [NewEvent(event, occurred_at=self.clock()) for event in events],
            actor=SECRETARIAT,
            correlation_id=uuid4(),
        )

    async def meeting(self, command: meetings.MeetingCommand) -> None:
        await self._run(
            "meetings",
            f"meeting-{command.meeting_id}",
            meetings.MeetingState.initial(),
            meetings.evolve,
            lambda state: meetings.decide(command, state),
        )

    async def resolution(self, command: resolutions.ResolutionCommand) -> None:
        await self._run(
            "resolutions",
            f"resolution-{command.resolution_id}",
            resolutions.ResolutionState.initial(),
            resolutions.evolve,
            lambda state: resolutions.decide(command, state),
        )

    async def published(self) -> bool:
        """Everything appended upstream is on Kafka."""
        for source, store in self.stores.items():
            head, _ = await store.head()
            if self.relays[source].published_position != head:
                return False
        return True

    # Commands of a realistic history, with the secretariat acting and the clock's time.

    def _at(self) -> datetime:
        return self.clock()

    async def schedule_meeting(self, day: date, host: Unit, venue: str) -> UUID:
        meeting_id = uuid4()
        await self.meeting(
            meetings.ScheduleMeeting(
                actor=SECRETARIAT,
                at=self._at(),
                meeting_id=meeting_id,
                scheduled_for=day,
                host_unit=host,
                venue=venue,
                occasion="16 Days of Activism",
            )
        )
        return meeting_id

    async def hold_meeting(self, meeting_id: UUID, day: date, host: Unit, venue: str) -> None:
        await self.meeting(
            meetings.HoldMeeting(
                actor=SECRETARIAT,
                at=self._at(),
                meeting_id=meeting_id,
                held_on=day,
                host_unit=host,
                venue=venue,
                attendees=(
                    meetings.Attendee(name="Chairperson, NCSW", role="Chairperson", unit=Unit.NCSW),
                ),
                agenda=("CEDAW reporting", "Independent WDDs"),
            )
        )

    async def pass_and_circulate(
        self,
        meeting_id: UUID,
        held_on: date,
        host: Unit,
        *,
        number: int,
        responsible: tuple[Unit, ...],
        participants: tuple[Unit, ...],
        feedback_due: date,
    ) -> UUID:
        resolution_id = uuid4()
        await self.resolution(
            resolutions.PassResolution(
                actor=SECRETARIAT,
                at=self._at(),
                resolution_id=resolution_id,
                meeting_id=meeting_id,
                meeting=resolutions.HeldMeetingFacts(
                    meeting_id=meeting_id,
                    status=resolutions.MeetingStatus.HELD,
                    held_on=held_on,
                    host_unit=host,
                ),
                number=number,
                title=f"Independent Women Development Departments ({number})",
                text="The Group resolves that every unit keeps an independent WDD "
                "with <its own> budget & staff.",
                priority_area=resolutions.PriorityArea.INDEPENDENT_WDDS,
                responsible_units=responsible,
            )
        )
        await self.resolution(
            resolutions.CirculateResolution(
                actor=SECRETARIAT,
                at=self._at(),
                resolution_id=resolution_id,
                participants=participants,
                feedback_due=feedback_due,
            )
        )
        return resolution_id

    async def feedback(self, resolution_id: UUID, unit: Unit) -> None:
        await self.resolution(
            resolutions.GiveFeedback(
                actor=Actor(subject=f"focal@{unit.value}", unit=unit, role=Role.FOCAL_PERSON),
                at=self._at(),
                resolution_id=resolution_id,
                unit=unit,
                person=f"Focal person of {unit.value}",
                position=resolutions.Position.ENDORSE,
            )
        )


# --- the notifications service, in-process ------------------------------------------------


def fast_settings(smtp: SmtpServer, directory: Path, **overrides: Any) -> NotificationSettings:
    values: dict[str, Any] = {
        "directory_path": directory,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "smtp_timeout_s": 5.0,
        "webhook_keys": dict.fromkeys(Unit, WEBHOOK_SECRET),
        "webhook_timeout_s": 5.0,
        "max_attempts": 3,
        "retry_base_s": 0.05,
        "retry_max_s": 0.2,
        "lease_s": 30.0,
        "worker_concurrency": 4,
        "poll_interval_s": 0.2,
        "scheduler_interval_s": 0.2,
        **overrides,
    }
    return NotificationSettings(**values)


def isolated_settings(base: Settings) -> Settings:
    """Databases and topics of this test alone (cleaned up with the session's)."""
    run = uuid4().hex[:6]
    return base.model_copy(
        update={
            "database_prefix": f"{base.database_prefix}n{run}_",
            "topic_prefix": f"{base.topic_prefix}n{run}.",
        }
    )


async def prepare_notifications(settings: Settings) -> None:
    await ensure_topics(settings)
    await build_service().migrate(settings)


@dataclass(frozen=True)
class RunningService:
    runtime: ServiceRuntime
    app: FastAPI

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://notifications"
        )


@contextlib.asynccontextmanager
async def running_notifications(
    settings: Settings, notification_settings: NotificationSettings, clock: MovableClock
) -> AsyncIterator[RunningService]:
    runtime = ServiceRuntime(build_service(clock=clock, settings=notification_settings), settings)
    app = runtime.http_app()
    async with runtime.lifespan(app):
        await wait_until(lambda: runtime.broker_started, timeout=30)
        yield RunningService(runtime, app)


@contextlib.asynccontextmanager
async def notifications_database(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """An administrative connection to the notifications database, for the test's checks."""
    connection = await asyncpg.connect(
        settings.admin_dsn(settings.service_database("notifications"))
    )
    await init_connection(connection)
    try:
        yield connection
    finally:
        await connection.close()


async def reset_consumer_offsets(settings: Settings, consumer: str) -> None:
    """Commit offset 0 on every topic the consumer reads, as if it never committed anything:
    what a consumer restarted before its offset commit gets, all at once."""
    topics = [settings.topics.events("meetings"), settings.topics.events("resolutions")]
    kafka = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.topics.group(consumer),
        enable_auto_commit=False,
    )
    await kafka.start()
    try:
        partitions = [TopicPartition(topic, 0) for topic in topics]
        kafka.assign(partitions)
        await kafka.commit(dict.fromkeys(partitions, 0))
    finally:
        await kafka.stop()
