"""End to end: a command sent to meetings until its event is visible in reporting.

The four services run as processes (``ipmg <service> run``, uvicorn) on the bench workspace's
own databases and topics. Commands (``POST /meetings``, with an Idempotency-Key and an
X-Correlation-Id) are sent open-loop: each has a scheduled send time on a fixed grid at the
offered rate and is sent then, whether or not earlier ones were answered; its latency is
counted from that scheduled time, so queueing anywhere (the client's connections included)
is not hidden by a late send.

"Visible in reporting" is observed in reporting's own database: a trigger that the bench adds
to the live projection's ``event_log`` (written in the same transaction as the document and
the timeline entries that the reporting HTTP API reads) calls ``pg_notify`` with the event's
correlation id, and the bench LISTENs. The notification is delivered when that transaction
commits, which is the moment a query can see the row: polling the HTTP API at 500 requests/s
would load the service being measured and add the polling interval to every figure. After
each step a sample of the meetings is read back through ``GET /reports/timeline/{id}``.

The notification also carries when meetings stored the event and when the projection's
transaction began, and a consumer of the bench's own notes when each event reaches the
meetings topic, so each latency splits into stages: the command, the relay, reporting's
consumer, the projection's transaction, and the commit with its notification.

A step whose oldest unseen command is over ``GIVE_UP_S`` late is overloaded: sending stops
there (the backlog would otherwise take minutes to clear) and the step is reported as such.

The baseline, the "floor", is the two network hops any design of this shape pays, at the same
rate and from the same scheduled times: an HTTP round trip to the same meetings process
(``GET /health/live``, same client, same connections), then a Kafka produce and consume of a
record of an envelope's size (the relay's producer settings, a consumer group with aiokafka's
default fetch settings like the services' subscribers). What ours adds above it is the work
in between: the command's transaction, the relay's wake-up, read and progress, and the
projection's transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
from aiokafka import AIOKafkaConsumer

from bench.progress import say
from bench.workspace import Workspace
from ipmg_shared.actors import Role, Unit
from ipmg_shared.auth import issue_token
from ipmg_shared.relay import make_producer
from ipmg_shared.settings import Settings
from ipmg_shared.topics import ensure_topics
from tests.support.processes import IPMG, ServiceProcess, running_service, service_env

SERVICES = ("meetings", "resolutions", "notifications", "reporting")
CHANNEL = "ipmg_bench_visible"
TARGET_P99_S = 0.100
TARGET_RATE = 200
SUSTAINED_SHARE = 0.95  # achieved ÷ offered for a rate to count as sustained
WINDOW_S = 0.25  # a step's commands in windows of this width, by the time they were sent
# The production default. Latencies far below it show the relay is woken by NOTIFY.
RELAY_POLL_INTERVAL_S = 1.0
GIVE_UP_S = 1.0  # a step whose oldest unseen command is this late stops sending: overloaded
DRAIN_S = 10.0  # after the last send, how long a command may still become visible
SETTLE_S = 60.0  # after a step, the backlog must clear before the next one
CONNECTIONS = 32  # keep-alive connections of the client to meetings
CHECKED_PER_STEP = 5  # meetings read back through reporting's HTTP API after each step
FLOOR_VALUE = b"x" * 1024  # about a MeetingScheduled envelope's size on the topic

STAGES = (
    "scheduled → stored by meetings",
    "stored → on the topic (relay)",
    "on the topic → projection begins (consumer)",
    "projection's transaction, to its row",
    "commit and notification → seen",
)
OURS = "ipmg, end to end"
FLOOR = "floor: HTTP + Kafka"

VISIBLE_TRIGGER = f"""
CREATE OR REPLACE FUNCTION public.{CHANNEL}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The correlation id, then three instants (Unix seconds): stored by meetings, the
    -- projection's transaction started, and this row written.
    PERFORM pg_notify('{CHANNEL}', concat_ws(' ', NEW.envelope->>'correlation_id',
        extract(epoch FROM NEW.recorded_at), extract(epoch FROM now()),
        extract(epoch FROM clock_timestamp())));
    RETURN NULL;
END
$$;
CREATE TRIGGER {CHANNEL} AFTER INSERT ON live.event_log
    FOR EACH ROW EXECUTE FUNCTION public.{CHANNEL}();
"""


@dataclass(frozen=True)
class LatencySizes:
    ladder: tuple[int, ...]  # offered rates, in order; after a failing one only `fixed` run
    fixed: tuple[int, ...]  # always run; peak memory is reported at each
    seconds: float  # ours, per rate
    floor_seconds: float  # the floor, per rate


# --- a light HTTP/1.1 client ----------------------------------------------------------------


class ConnectionClosed(Exception):
    """The server closed the connection before answering (an idle keep-alive one)."""


class Http:
    """Keep-alive HTTP/1.1 connections to one local service.

    The load generator shares two cores with the services it measures, so it is kept light: a
    request here costs a few tens of µs of the bench's CPU. A request waits for a free
    connection; that wait is part of its latency, counted from its scheduled time.
    """

    def __init__(self, port: int, connections: int) -> None:
        self.port = port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(connections)
        self._writers: set[asyncio.StreamWriter] = set()

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        head = [
            f"{method} {path} HTTP/1.1",
            f"Host: 127.0.0.1:{self.port}",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        message = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        async with self._slots:
            while self._idle:  # the server closes a connection idle for 5 s: take another
                reader, writer = self._idle.pop()
                with contextlib.suppress(ConnectionClosed, ConnectionError):
                    return await self._exchange(reader, writer, message)
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            self._writers.add(writer)
            return await self._exchange(reader, writer, message)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, message: bytes
    ) -> tuple[int, bytes]:
        try:
            writer.write(message)
            first = await reader.readline()
            if not first:
                raise ConnectionClosed
            status = int(first.split()[1])
            length, keep = 0, True
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection":
                    keep = value.strip().lower() != "close"
                elif name == "transfer-encoding":
                    raise ValueError("chunked responses are not expected here")
            data = await reader.readexactly(length)
        except BaseException:
            self._discard(writer)
            raise
        if keep:
            self._idle.append((reader, writer))
        else:
            self._discard(writer)
        return status, data

    def _discard(self, writer: asyncio.StreamWriter) -> None:
        self._writers.discard(writer)
        writer.close()

    def close(self) -> None:
        for writer in list(self._writers):
            self._discard(writer)
        self._idle.clear()


HTTP_ERRORS = (OSError, ValueError, IndexError, asyncio.IncompleteReadError, ConnectionClosed)


# --- probes and steps ---------------------------------------------------------------------


@dataclass
class Probe:
    """One command (or one floor round trip), its scheduled time and what became of it."""

    key: str  # the correlation id
    scheduled: float  # time.monotonic()
    answered: float | None = None  # the HTTP answer
    status: int = 0  # 0: no HTTP answer at all
    seen: float | None = None  # visible in reporting, or consumed (the floor)
    entity: str | None = None  # the meeting's id, for a few of them
    # Loop times of: stored by meetings, projection transaction begun, projection row written.
    marks: tuple[float, float, float] | None = None
    on_topic: float | None = None  # read from the meetings topic by a consumer of the bench's


class Tracker:
    """Probes not seen yet, by key: the listener (or consumer) marks them as they arrive."""

    def __init__(self) -> None:
        self.pending: dict[str, Probe] = {}
        self._empty = asyncio.Event()
        self._empty.set()

    def add(self, probe: Probe) -> None:
        self.pending[probe.key] = probe
        self._empty.clear()

    def seen(self, key: str, at: float, marks: tuple[float, float, float] | None = None) -> None:
        probe = self.pending.pop(key, None)
        if probe is not None:
            probe.seen = at
            probe.marks = marks
        if not self.pending:
            self._empty.set()

    def failed(self, key: str) -> None:
        """Not accepted: it will never be seen; do not wait for it."""
        self.pending.pop(key, None)
        if not self.pending:
            self._empty.set()

    def oldest(self) -> Probe | None:
        return next(iter(self.pending.values()), None)

    async def wait_empty(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._empty.wait(), timeout)
        return not self.pending


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest rank; ``inf`` counts a probe never seen."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


@dataclass
class Step:
    contender: str
    offered: int
    seconds: float
    probes: list[Probe] = field(default_factory=list)
    gave_up_after_s: float | None = None  # sending stopped early: overloaded
    cutoff: float = math.inf  # seen after this counts as never seen
    checked: tuple[int, int] = (0, 0)  # read back through reporting's HTTP API: ok, tried

    def latencies(self) -> list[float]:
        return [
            p.seen - p.scheduled if p.seen is not None and p.seen <= self.cutoff else math.inf
            for p in self.probes
        ]

    def answer_latencies(self) -> list[float]:
        return [
            p.answered - p.scheduled if p.answered is not None and p.status < 300 else math.inf
            for p in self.probes
        ]

    def stages(self) -> dict[str, dict[str, float]]:
        """Where the time went, stage by stage (p50, p99), for probes seen with their marks."""
        spans: dict[str, list[float]] = {name: [] for name in STAGES}
        for p in self.probes:
            if p.marks is None or p.seen is None or p.on_topic is None:
                continue
            stored, begun, written = p.marks
            for name, span in zip(
                STAGES,
                (
                    stored - p.scheduled,
                    p.on_topic - stored,
                    begun - p.on_topic,
                    written - begun,
                    p.seen - written,
                ),
                strict=True,
            ):
                spans[name].append(span)
        return {
            name: {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99)}
            for name, values in spans.items()
            if values
        }

    def slow_windows(self, width_s: float = WINDOW_S) -> tuple[int, int]:
        """Of the step's windows of ``width_s`` (by scheduled time), those in which a command
        took over the target p99 (or was never seen), and how many windows there were.

        A few such windows among many is a pause of the machine or of one process; most of
        them, a pipeline that cannot keep up.
        """
        if not self.probes:
            return (0, 0)
        start = self.probes[0].scheduled
        windows: dict[int, bool] = {}
        for probe, latency in zip(self.probes, self.latencies(), strict=True):
            window = int((probe.scheduled - start) / width_s)
            windows[window] = windows.get(window, False) or latency > TARGET_P99_S
        return (sum(windows.values()), len(windows))

    def quantiles(self, answered: bool = False) -> dict[str, float]:
        values = self.answer_latencies() if answered else self.latencies()
        if not values:
            return {"p50": math.inf, "p95": math.inf, "p99": math.inf}
        return {f"p{q}": percentile(values, q / 100) for q in (50, 95, 99)}

    @property
    def errors(self) -> int:
        return sum(1 for p in self.probes if not 200 <= p.status < 300)

    @property
    def unseen(self) -> int:
        return sum(1 for latency in self.latencies() if math.isinf(latency))

    @property
    def achieved(self) -> float:
        """Probes seen per second, from the first scheduled send to the last one seen."""
        seen = [p.seen for p in self.probes if p.seen is not None and p.seen <= self.cutoff]
        if not seen or not self.probes:
            return 0.0
        return len(seen) / max(max(seen) - self.probes[0].scheduled, 1 / self.offered)

    @property
    def sustained(self) -> bool:
        return (
            self.gave_up_after_s is None
            and self.errors == 0
            and self.unseen == 0
            and self.quantiles()["p99"] < TARGET_P99_S
            and self.achieved >= SUSTAINED_SHARE * self.offered
        )

    def to_json(self) -> dict[str, Any]:
        def ms(values: dict[str, float]) -> dict[str, float | None]:
            return {k: None if math.isinf(v) else round(v * 1e3, 2) for k, v in values.items()}

        slow, windows = self.slow_windows()
        return {
            "contender": self.contender,
            "offered_per_s": self.offered,
            "planned_s": self.seconds,
            "sent": len(self.probes),
            "achieved_per_s": round(self.achieved, 1),
            "latency_ms": ms(self.quantiles()),
            "http_answer_ms": ms(self.quantiles(answered=True)),
            "errors": self.errors,
            "unseen": self.unseen,
            "gave_up_after_s": self.gave_up_after_s,
            "read_back_over_http": list(self.checked),
            "stages_ms": {name: ms(values) for name, values in self.stages().items()},
            "windows_over_target": {"width_s": WINDOW_S, "slow": slow, "of": windows},
            "sustained": self.sustained,
        }


async def open_loop(
    contender: str,
    offered: int,
    seconds: float,
    tracker: Tracker,
    fire: Callable[[Probe], Coroutine[Any, Any, None]],
) -> Step:
    """Send on a fixed schedule; wait for what was sent to be seen (up to DRAIN_S)."""
    step = Step(contender, offered, seconds)
    tasks: set[asyncio.Task[None]] = set()
    start = time.monotonic() + 0.05
    for n in range(int(offered * seconds)):
        at = start + n / offered
        if (delay := at - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        oldest = tracker.oldest()
        if oldest is not None and time.monotonic() - oldest.scheduled > GIVE_UP_S:
            step.gave_up_after_s = round(at - start, 1)
            break
        probe = Probe(str(uuid4()), at)
        step.probes.append(probe)
        tracker.add(probe)
        task = asyncio.create_task(fire(probe))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await tracker.wait_empty(DRAIN_S)
    step.cutoff = time.monotonic()
    # Whatever is still on its way must clear before the next step starts.
    if not await tracker.wait_empty(SETTLE_S):
        say(f"latency: {len(tracker.pending)} still unseen {SETTLE_S:.0f} s after the step")
        tracker.pending.clear()
    # Requests still unanswered by now are abandoned (counted as not accepted).
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), SETTLE_S)
    return step


# --- the system under test ----------------------------------------------------------------


def meeting_body(n: int) -> bytes:
    # Meetings of the past: notifications projects them and records their invitations as
    # suppressed ("its day has passed") instead of mailing eight units per meeting.
    day = f"2018-{1 + n % 12:02d}-15"
    body = {
        "scheduled_for": day,
        "host_unit": "punjab",
        "venue": f"Lahore {n}",
        "extraordinary": True,  # many a quarter: outside the rotation
        "reason": "Load",
    }
    return json.dumps(body).encode()


class System:
    """The four services as processes, and what the bench needs to drive and watch them."""

    def __init__(self, space: Workspace, logs: Path) -> None:
        self.space = space
        self.settings: Settings = space.settings
        self.logs = logs
        self.services: dict[str, ServiceProcess] = {}
        self.stack = contextlib.ExitStack()
        token = issue_token(
            self.settings, subject="staff@ncsw.gov.pk", unit=Unit.NCSW, role=Role.SECRETARIAT
        )
        self.auth = {"Authorization": f"Bearer {token}"}
        self.tracker = Tracker()
        self.listener: asyncpg.Connection | None = None
        self.meetings: Http | None = None
        self.reporting: Http | None = None
        self.sent = 0
        self.on_topic: dict[str, float] = {}  # correlation id -> read from the meetings topic
        self._watch: asyncio.Task[None] | None = None

    async def watch_topic(self) -> None:
        """When each event reaches the meetings topic, as a consumer of the bench's sees it."""
        consumer = AIOKafkaConsumer(
            self.settings.topics.events("meetings"),
            **self.settings.kafka_client_options(),
            group_id=self.settings.topics.group("latency-watch"),
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            async for record in consumer:
                at = time.monotonic()
                key = json.loads(record.value or b"{}").get("correlation_id")
                if key is not None:
                    self.on_topic[key] = at
        finally:
            await consumer.stop()

    async def quiesce(self) -> None:
        """Wait until every consumer of meetings' events has applied all of them.

        Reporting has when the tracker is empty; resolutions and notifications may still be
        working through an overloaded step's backlog, which would load the next measurement.
        """
        deadline = time.monotonic() + SETTLE_S
        meetings = await self.space.admin("meetings")
        consumers = [await self.space.admin(name) for name in ("resolutions", "notifications")]
        try:
            head = await meetings.fetchval("SELECT coalesce(max(position), 0) FROM events")
            for consumer in consumers:
                while time.monotonic() < deadline:
                    applied = await consumer.fetchval(
                        "SELECT coalesce(max(last_position), 0) FROM consumer_sources "
                        "WHERE source = 'meetings'"
                    )
                    if applied >= head:
                        break
                    await asyncio.sleep(0.2)
        finally:
            for connection in (meetings, *consumers):
                await connection.close()

    def topic_times(self, step: Step) -> None:
        for probe in step.probes:
            probe.on_topic = self.on_topic.pop(probe.key, None)

    async def start(self) -> None:
        await asyncio.to_thread(
            subprocess.run,
            [str(IPMG), "migrate"],
            env=service_env(self.settings),
            check=True,
            timeout=180,
            capture_output=True,
        )
        await self.space.topics("meetings", "resolutions", "notifications")
        admin = await self.space.admin("reporting")
        try:
            await admin.execute(VISIBLE_TRIGGER)
        finally:
            await admin.close()
        overrides = {
            "IPMG_RELAY_POLL_INTERVAL_S": str(RELAY_POLL_INTERVAL_S),
            "IPMG_KEYS_DIR": str(self.logs / "keys"),
        }
        for name in SERVICES:
            self.services[name] = self.stack.enter_context(
                running_service(name, self.settings, self.logs, **overrides)
            )
        for service in self.services.values():
            await asyncio.to_thread(service.wait_ready, 90.0)
        wall = time.time() - time.monotonic()  # the database's instants, on the monotonic clock

        def visible(_c: object, _pid: int, _channel: str, payload: object) -> None:
            key, *instants = str(payload).split(" ")
            stored, begun, written = (float(instant) - wall for instant in instants)
            self.tracker.seen(key, time.monotonic(), (stored, begun, written))

        self.listener = await self.space.admin("reporting")
        await self.listener.add_listener(CHANNEL, visible)
        self._watch = asyncio.create_task(self.watch_topic())
        self.meetings = Http(self.services["meetings"].port, CONNECTIONS)
        self.reporting = Http(self.services["reporting"].port, 2)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for client in (self.meetings, self.reporting):
            if client is not None:
                client.close()
        if self.listener is not None:
            await self.listener.close()
        await asyncio.to_thread(self.stack.close)

    async def schedule_meeting(self, probe: Probe) -> None:
        assert self.meetings is not None
        self.sent += 1
        number = self.sent
        headers = {
            **self.auth,
            "Content-Type": "application/json",
            "Idempotency-Key": probe.key,
            "X-Correlation-Id": probe.key,
        }
        try:
            status, data = await self.meetings.request(
                "POST", "/meetings", headers, meeting_body(number)
            )
        except HTTP_ERRORS:
            self.tracker.failed(probe.key)
            return
        probe.answered = time.monotonic()
        probe.status = status
        if status != 201:
            self.tracker.failed(probe.key)
        elif number % 50 == 1:
            probe.entity = str(json.loads(data)["id"])

    async def read_back(self, step: Step) -> None:
        """A few of the step's meetings, through reporting's HTTP API."""
        assert self.reporting is not None
        chosen = [p for p in step.probes if p.entity is not None and p.seen is not None]
        chosen = chosen[:: max(1, len(chosen) // CHECKED_PER_STEP)][:CHECKED_PER_STEP]
        ok = 0
        for probe in chosen:
            status, data = await self.reporting.request(
                "GET", f"/reports/timeline/{probe.entity}", self.auth
            )
            entries = json.loads(data) if status == 200 else []
            ok += any(entry.get("type") == "MeetingScheduled" for entry in entries)
        step.checked = (ok, len(chosen))

    def memory(self) -> dict[str, dict[str, int]]:
        """VmRSS and VmHWM (peak resident set since start) of each service process, in KiB."""
        found: dict[str, dict[str, int]] = {}
        for name, service in self.services.items():
            status = Path(f"/proc/{service.process.pid}/status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            found[name] = {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM")}
        return found

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU time of each service process so far."""
        ticks = 100.0  # os.sysconf("SC_CLK_TCK") on Linux
        found = {}
        for name, service in self.services.items():
            stat = Path(f"/proc/{service.process.pid}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            found[name] = (int(fields[11]) + int(fields[12])) / ticks
        return found


class Floor:
    """HTTP round trip to meetings' /health/live, then a Kafka produce and consume."""

    def __init__(self, settings: Settings, meetings: Http) -> None:
        self.settings = settings
        self.meetings = meetings
        self.topic = settings.topics.events("latency-floor")
        self.tracker = Tracker()
        self.producer = make_producer(settings, "bench-latency-floor")
        self.consumer = AIOKafkaConsumer(
            self.topic,
            **settings.kafka_client_options(),
            group_id=settings.topics.group("latency-floor"),
            auto_offset_reset="earliest",
        )
        self._reading: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await ensure_topics(self.settings, ["latency-floor"])
        await self.producer.start()
        await self.consumer.start()
        self._reading = asyncio.create_task(self._read())
        probe = Probe("warm-up", time.monotonic())
        self.tracker.add(probe)
        await self.producer.send_and_wait(self.topic, FLOOR_VALUE, key=probe.key.encode())
        if not await self.tracker.wait_empty(30):
            raise RuntimeError("the floor's consumer got nothing in 30 s")

    async def _read(self) -> None:
        async for record in self.consumer:
            self.tracker.seen((record.key or b"").decode(), time.monotonic())

    async def stop(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
        await self.consumer.stop()
        await self.producer.stop()

    async def round_trip(self, probe: Probe) -> None:
        try:
            status, _ = await self.meetings.request("GET", "/health/live", {})
        except HTTP_ERRORS:
            self.tracker.failed(probe.key)
            return
        probe.answered = time.monotonic()
        probe.status = status
        if status != 200:
            self.tracker.failed(probe.key)
            return
        await self.producer.send(self.topic, FLOOR_VALUE, key=probe.key.encode())


# --- the benchmark ------------------------------------------------------------------------


@dataclass
class LatencyResult:
    sizes: LatencySizes
    steps: list[Step]
    floors: dict[int, Step]
    memory_at_rest: dict[str, dict[str, int]]
    memory_after: dict[int, dict[str, dict[str, int]]]  # offered rate -> service -> figures
    cpu_per_command_ms: dict[str, float]  # over the whole run, each service

    @property
    def sustained(self) -> int | None:
        best = None
        for step in self.steps:
            if not step.sustained:
                break
            best = step.offered
        return best

    def to_json(self) -> dict[str, Any]:
        return {
            "relay_poll_interval_s": RELAY_POLL_INTERVAL_S,
            "target": {"p99_ms": TARGET_P99_S * 1e3, "at_per_s": TARGET_RATE},
            "sustained_per_s": self.sustained,
            "steps": [step.to_json() for step in self.steps],
            "floor": [step.to_json() for step in self.floors.values()],
            "memory_kib": {
                "at_rest": self.memory_at_rest,
                **{f"after_{rate}_per_s": found for rate, found in self.memory_after.items()},
            },
            "service_cpu_ms_per_command": self.cpu_per_command_ms,
        }

    def markdown(self, header: str) -> str:
        def ms(value: float) -> str:
            if math.isinf(value):
                return "—"
            return f"{value * 1e3:,.0f}" if value >= 0.1 else f"{value * 1e3:.1f}"

        lines = [
            header,
            "",
            f"**End to end: `POST /meetings` scheduled → its event visible in reporting, ms**, "
            f"one run of {self.sizes.seconds:g} s per rate (the floor: {self.sizes.floor_seconds:g}"
            f" s); relay poll interval {RELAY_POLL_INTERVAL_S:g} s (wake-ups by NOTIFY)",
            "",
            "| offered/s | achieved/s | p50 | p95 | p99 | floor p50 | floor p95 | floor p99 "
            "| p50 ÷ floor | p99 ÷ floor | 2xx p50 | 2xx p99 | health p50 | health p99 | notes |",
            "|---" + "|---:" * 14 + "|---|",
        ]
        for step in self.steps:
            ours, answered = step.quantiles(), step.quantiles(answered=True)
            floor = self.floors.get(step.offered)
            cells = [
                f"{step.offered:,}",
                f"{step.achieved:,.0f}",
                *(ms(ours[q]) for q in ("p50", "p95", "p99")),
            ]
            if floor is not None:
                base, health = floor.quantiles(), floor.quantiles(answered=True)
                cells += [ms(base[q]) for q in ("p50", "p95", "p99")]
                cells += [
                    "—" if math.isinf(ours[q]) else f"{ours[q] / base[q]:.1f}"
                    for q in ("p50", "p99")
                ]
            else:
                cells += ["", "", "", "", ""]
            cells += [ms(answered["p50"]), ms(answered["p99"])]
            if floor is not None:
                cells += [ms(health["p50"]), ms(health["p99"])]
            else:
                cells += ["", ""]
            notes = []
            if step.gave_up_after_s is not None:
                notes.append(
                    f"overloaded: a command waited over {GIVE_UP_S:g} s, sending stopped after "
                    f"{step.gave_up_after_s:g} s"
                )
            if step.errors:
                notes.append(f"{step.errors} not accepted")
            if step.unseen:
                notes.append(f"{step.unseen} not seen within {DRAIN_S:g} s")
            if step.checked[1]:
                notes.append(f"read back {step.checked[0]}/{step.checked[1]}")
            cells.append("; ".join(notes))
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            "**Where the time goes, ms (p50 / p99 of each stage; the instants are taken by "
            "PostgreSQL's clock and the bench's, on the same machine)**",
            "",
            "| offered/s | "
            + " | ".join(STAGES)
            + f" | {WINDOW_S * 1e3:g}-ms windows with a command over "
            f"{TARGET_P99_S * 1e3:g} ms |",
            "|---" + "|---:" * (len(STAGES) + 1) + "|",
        ]
        for step in self.steps:
            stages = step.stages()
            cells = [f"{step.offered:,}"]
            for name in STAGES:
                found = stages.get(name)
                cells.append(f"{ms(found['p50'])} / {ms(found['p99'])}" if found else "—")
            slow, windows = step.slow_windows()
            cells.append(f"{slow} of {windows}")
            lines.append("| " + " | ".join(cells) + " |")
        sustained = self.sustained
        at_target = next((s for s in self.steps if s.offered == TARGET_RATE), None)
        lines += [
            "",
            "Highest rate sustained (p99 under 100 ms, at least 95% of the offered rate seen, "
            "nothing refused or lost): "
            + (f"**{sustained} commands/s** of the rates tried." if sustained else "**none**."),
        ]
        if at_target is not None:
            p99 = at_target.quantiles()["p99"]
            met = "met" if at_target.sustained else "not met"
            reached = "not all seen" if math.isinf(p99) else f"p99 {ms(p99)} ms"
            lines.append(
                f"Target, p99 under 100 ms at {TARGET_RATE} commands/s: **{met}** "
                f"({reached}, {at_target.achieved:,.0f}/s achieved)."
            )
        rates = list(self.memory_after)
        lines += [
            "",
            "**Memory of each service process, MiB**: resident at rest (after start-up and "
            "warm-up), then the peak (VmHWM) up to the end of each rate's run; and CPU time per "
            "command over the runs of ours (not the floor's)",
            "",
            "| service | at rest | "
            + " | ".join(f"peak to {rate}/s" for rate in rates)
            + " | CPU/command |",
            "|---" + "|---:" * (len(rates) + 2) + "|",
        ]
        for name in SERVICES:
            cells = [name, f"{self.memory_at_rest[name]['VmRSS'] / 1024:.0f}"]
            cells += [f"{self.memory_after[rate][name]['VmHWM'] / 1024:.0f}" for rate in rates]
            cells.append(f"{self.cpu_per_command_ms[name]:.1f} ms")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


async def run(space: Workspace, sizes: LatencySizes) -> LatencyResult:
    with tempfile.TemporaryDirectory(prefix="ipmg-bench-latency-") as logs:
        system = System(space, Path(logs))
        try:
            say("latency: migrating and starting the four services")
            await system.start()
            return await measure(system, sizes)
        except BaseException:
            for service in system.services.values():
                say(f"latency: {service.name} log tail:\n{service.log_tail(5)}")
            raise
        finally:
            await system.stop()


async def measure(system: System, sizes: LatencySizes) -> LatencyResult:
    assert system.meetings is not None
    # Warm-up: consumers join their groups, the first requests and statements are paid.
    warm = await open_loop("warm-up", 20, 3, system.tracker, system.schedule_meeting)
    if warm.errors or warm.unseen:
        raise RuntimeError(f"warm-up: {warm.errors} refused, {warm.unseen} never seen")
    system.topic_times(warm)
    await system.quiesce()
    say(f"latency: warm-up done, p50 {warm.quantiles()['p50'] * 1e3:.0f} ms")
    cpu_spent = dict.fromkeys(SERVICES, 0.0)  # during our steps only, not the floor's
    sent_before = system.sent
    at_rest = system.memory()
    floor = Floor(system.settings, system.meetings)
    await floor.start()
    steps: list[Step] = []
    floors: dict[int, Step] = {}
    after: dict[int, dict[str, dict[str, int]]] = {}
    failed = False
    try:
        for rate in sizes.ladder:
            if failed and rate not in sizes.fixed:
                continue
            cpu_before = system.cpu_seconds()
            step = await open_loop(
                OURS, rate, sizes.seconds, system.tracker, system.schedule_meeting
            )
            await system.quiesce()
            cpu_after = system.cpu_seconds()
            for name in SERVICES:
                cpu_spent[name] += cpu_after[name] - cpu_before[name]
            await system.read_back(step)
            system.topic_times(step)
            steps.append(step)
            failed = failed or not step.sustained
            q = step.quantiles()
            say(
                f"latency {rate:4}/s ours: p50 {q['p50'] * 1e3:7.1f} p95 {q['p95'] * 1e3:7.1f} "
                f"p99 {q['p99'] * 1e3:7.1f} ms, {step.achieved:5.0f}/s achieved"
                + (f", gave up after {step.gave_up_after_s} s" if step.gave_up_after_s else "")
            )
            if rate in sizes.fixed:
                after[rate] = system.memory()
            # The floor at every rate run: below saturation its ratio is the telling one.
            base = await open_loop(
                FLOOR, rate, sizes.floor_seconds, floor.tracker, floor.round_trip
            )
            floors[rate] = base
            q = base.quantiles()
            say(
                f"latency {rate:4}/s floor: p50 {q['p50'] * 1e3:7.1f} p95 "
                f"{q['p95'] * 1e3:7.1f} p99 {q['p99'] * 1e3:7.1f} ms"
            )
    finally:
        await floor.stop()
    commands = max(system.sent - sent_before, 1)
    cpu = {name: round(cpu_spent[name] / commands * 1e3, 2) for name in SERVICES}
    return LatencyResult(sizes, steps, floors, at_rest, after, cpu)
