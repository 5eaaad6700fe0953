"""The event store of one service, on PostgreSQL (asyncpg).

Appends are serialised per store with a transaction-scoped advisory lock, so the global
``position`` is gap-free and equal to commit order: a reader of ``position > n`` can never
skip an event that commits late. Each event is hash-chained to the one before it inside the
same transaction, and a command id (``Idempotency-Key``) is stored with its result there too.

Appends that arrive while one is being written are written together, in one transaction
under one lock (group commit): each is checked and answered as if it were alone, in the
order they arrived, and concurrent writers share the lock's round trips and the commit.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID, uuid4

import asyncpg

from ipmg_shared.actors import Actor
from ipmg_shared.canonical import GENESIS_HASH, canonical_bytes, format_instant
from ipmg_shared.chain import ChainReport, ChainVerifier
from ipmg_shared.envelope import Envelope, hash_event_fields
from ipmg_shared.events import DomainEvent, EventRegistry, JsonObject
from ipmg_shared.metrics import EVENTS_APPENDED

if TYPE_CHECKING:
    from ipmg_shared.db import DbConnection

APPEND_LOCK_KEY = 0x1A11_0010
EVENTS_APPENDED_CHANNEL = "ipmg_events_appended"
EVENT_COLUMNS = (
    "position, event_id, stream_id, stream_version, type, schema_version, source, occurred_at, "
    "recorded_at, actor, correlation_id, causation_id, payload, prev_hash, hash"
)

# A transaction with the append lock, begun in one round trip: a simple query may hold both
# statements, where asyncpg's transaction() sends BEGIN alone. The key is a constant literal.
BEGIN_LOCKED = f"BEGIN; SELECT pg_advisory_xact_lock({APPEND_LOCK_KEY})"
# What a batch of appends needs to know, read in one statement once the lock is held: the
# head of the chain, each stream's version and the earlier results of their command ids.
APPEND_STATE = """
SELECT head.position, head.hash,
       (SELECT jsonb_object_agg(s.stream_id, (SELECT coalesce(max(e.stream_version), 0)
                                              FROM events AS e WHERE e.stream_id = s.stream_id))
        FROM unnest($1::text[]) AS s(stream_id)) AS versions,
       (SELECT jsonb_object_agg(c.command_id, jsonb_build_object('fingerprint', c.fingerprint,
                                                                 'result', c.result))
        FROM command_results AS c WHERE c.command_id = ANY($2::text[])) AS earlier
FROM (SELECT 1) AS here
LEFT JOIN LATERAL (SELECT position, hash FROM events ORDER BY position DESC LIMIT 1) AS head
       ON true
"""
# A batch written by the store's function (migration 0003): the lock, the check that what the
# plan assumed still holds, the events, the commands' results and the relay's wake-up. Sent
# alone it is a whole append, committed, in one round trip; it writes nothing and returns
# false if the plan no longer holds.
APPEND_EVENTS = (
    "SELECT append_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, "
    "$16, $17, $18, $19, $20, $21, $22, $23, $24, $25)"
)
# A command's earlier result (if its id was used before) and its stream's events, in one round
# trip: an empty stream is one row of NULL event columns.
STREAM_FOR_COMMAND = f"""
SELECT earlier.fingerprint AS earlier_fingerprint, earlier.result AS earlier_result, e.*
FROM (SELECT 1) AS here
LEFT JOIN command_results AS earlier ON earlier.command_id = $2
LEFT JOIN LATERAL (SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1) AS e ON true
ORDER BY e.stream_version
"""
# Appends written in one transaction at most: bounds the lock's hold and the statement.
MAX_BATCH = 100

State = TypeVar("State")


class WrongExpectedVersion(Exception):
    """Optimistic concurrency: the stream moved on since the caller read it. Nothing appended."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id} is at version {actual}, the command expected {expected}"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class IdempotencyKeyReused(Exception):
    """The same command id was sent again with a different request."""

    def __init__(self, command_id: str) -> None:
        super().__init__(f"idempotency key {command_id!r} was already used for another request")
        self.command_id = command_id


@dataclass(frozen=True)
class CommandId:
    """A client's command id (``Idempotency-Key``) and a fingerprint of what it asked."""

    key: str
    fingerprint: str
    client_key: str | None = None  # what the client sent, when ``key`` is derived from it

    @classmethod
    def of(cls, key: str, request: Any) -> CommandId:
        return cls(key=key, fingerprint=hashlib.sha256(canonical_bytes(request)).hexdigest())


@dataclass(frozen=True)
class AppendResult:
    stream_id: str
    stream_version: int
    first_position: int
    last_position: int
    event_ids: list[str]
    replayed: bool = False  # True when this is the stored result of an earlier identical command

    def to_json(self) -> JsonObject:
        return {
            "stream_id": self.stream_id,
            "stream_version": self.stream_version,
            "first_position": self.first_position,
            "last_position": self.last_position,
            "event_ids": self.event_ids,
        }

    @classmethod
    def from_json(cls, data: JsonObject, *, replayed: bool) -> AppendResult:
        return cls(**data, replayed=replayed)


@dataclass(frozen=True)
class NewEvent:
    """An event ready to append: the payload plus what the application knows about it."""

    payload: DomainEvent
    occurred_at: datetime
    event_id: UUID = field(default_factory=uuid4)


@dataclass
class PendingAppend:
    """One caller's append, waiting for the batch that writes it."""

    stream_id: str
    expected_version: int | None
    events: Sequence[NewEvent]
    payloads: list[JsonObject]
    actor: JsonObject
    correlation_id: UUID
    causation_id: UUID | None
    command: CommandId | None
    outcome: asyncio.Future[AppendResult]


@dataclass
class BatchPlan:
    """What one transaction writes for a batch of appends, and what each caller is told."""

    recorded_at: datetime
    head_position: int  # the chain's head it was planned on
    versions_before: dict[str, int]  # and each of the batch's streams' version
    last_position: int
    last_hash: str
    rows: list[tuple[JsonObject, NewEvent, PendingAppend]] = field(default_factory=list)
    remembered: list[tuple[str, str, str, JsonObject]] = field(default_factory=list)
    outcomes: list[tuple[PendingAppend, AppendResult | Exception]] = field(default_factory=list)


def plan_batch(
    source: str,
    batch: Sequence[PendingAppend],
    *,
    versions: dict[str, int],
    earlier: dict[str, JsonObject],
    head: tuple[int, str],
    recorded_at: datetime,
) -> BatchPlan:
    """Each append checked in turn against the store and the appends before it (pure).

    ``versions`` holds each stream's version, ``earlier`` the stored results of the batch's
    command ids, ``head`` the chain's last position and hash; all read under the lock.
    """
    versions, earlier = dict(versions), dict(earlier)
    position, prev_hash = head
    versions_before = {pending.stream_id: versions.get(pending.stream_id, 0) for pending in batch}
    plan = BatchPlan(recorded_at, position, versions_before, position, prev_hash)
    for pending in batch:
        command = pending.command
        if command is not None and command.key in earlier:
            first = earlier[command.key]
            plan.outcomes.append((pending, _first_answer(command, **first)))
            continue
        current = versions.get(pending.stream_id, 0)
        if pending.expected_version is not None and current != pending.expected_version:
            error = WrongExpectedVersion(pending.stream_id, pending.expected_version, current)
            plan.outcomes.append((pending, error))
            continue
        first_position = position + 1
        for offset, (event, payload) in enumerate(
            zip(pending.events, pending.payloads, strict=True)
        ):
            position += 1
            fields: JsonObject = {
                "event_id": str(event.event_id),
                "type": event.payload.event_type,
                "schema_version": event.payload.schema_version,
                "source": source,
                "stream_id": pending.stream_id,
                "stream_version": current + offset + 1,
                "position": position,
                "occurred_at": format_instant(event.occurred_at),
                "recorded_at": format_instant(recorded_at),
                "actor": pending.actor,
                "correlation_id": str(pending.correlation_id),
                "causation_id": None if pending.causation_id is None else str(pending.causation_id),
                "payload": payload,
                "prev_hash": prev_hash,
            }
            prev_hash = fields["hash"] = hash_event_fields(fields)
            plan.rows.append((fields, event, pending))
        versions[pending.stream_id] = current + len(pending.events)
        result = AppendResult(
            stream_id=pending.stream_id,
            stream_version=versions[pending.stream_id],
            first_position=first_position,
            last_position=position,
            event_ids=[str(event.event_id) for event in pending.events],
        )
        if command is not None:
            earlier[command.key] = {"fingerprint": command.fingerprint, "result": result.to_json()}
            plan.remembered.append(
                (command.key, command.fingerprint, pending.stream_id, result.to_json())
            )
        plan.outcomes.append((pending, result))
    plan.last_position, plan.last_hash = position, prev_hash
    return plan


def _settle(pending: PendingAppend, outcome: AppendResult | Exception) -> None:
    if pending.outcome.done():  # the caller gave up meanwhile
        return
    if isinstance(outcome, AppendResult):
        pending.outcome.set_result(outcome)
    else:
        pending.outcome.set_exception(outcome)


def _first_answer(
    command: CommandId, fingerprint: str, result: JsonObject
) -> AppendResult | IdempotencyKeyReused:
    """What a command whose id was used before is told: the first result, if it asks the same."""
    if fingerprint != command.fingerprint:
        return IdempotencyKeyReused(command.client_key or command.key)
    return AppendResult.from_json(result, replayed=True)


def _earlier(command: CommandId, fingerprint: str, result: JsonObject) -> AppendResult:
    answer = _first_answer(command, fingerprint, result)
    if isinstance(answer, IdempotencyKeyReused):
        raise answer
    return answer


@asynccontextmanager
async def _locked_transaction(connection: DbConnection) -> AsyncIterator[None]:
    """A transaction holding the append lock, committed on success and rolled back otherwise,
    as asyncpg's ``transaction()`` would; begun with the lock in one round trip."""
    try:
        await connection.execute(BEGIN_LOCKED)  # a lock timeout leaves the block begun
        yield
    except BaseException:
        if connection.is_in_transaction():
            await connection.execute("ROLLBACK")
        raise
    await connection.execute("COMMIT")


def envelope_from_row(row: asyncpg.Record) -> Envelope:
    return Envelope.model_validate(
        {
            "position": row["position"],
            "event_id": row["event_id"],
            "stream_id": row["stream_id"],
            "stream_version": row["stream_version"],
            "type": row["type"],
            "schema_version": row["schema_version"],
            "source": row["source"],
            "occurred_at": row["occurred_at"],
            "recorded_at": row["recorded_at"],
            "actor": row["actor"],
            "correlation_id": row["correlation_id"],
            "causation_id": row["causation_id"],
            "payload": row["payload"],
            "prev_hash": row["prev_hash"],
            "hash": row["hash"],
        }
    )


def json_from_row(row: asyncpg.Record) -> JsonObject:
    """The envelope's JSON form straight from a row (no model validation: hot paths)."""
    causation = row["causation_id"]
    return {
        "event_id": str(row["event_id"]),
        "type": row["type"],
        "schema_version": row["schema_version"],
        "source": row["source"],
        "stream_id": row["stream_id"],
        "stream_version": row["stream_version"],
        "position": row["position"],
        "occurred_at": format_instant(row["occurred_at"]),
        "recorded_at": format_instant(row["recorded_at"]),
        "actor": row["actor"],
        "correlation_id": str(row["correlation_id"]),
        "causation_id": None if causation is None else str(causation),
        "payload": row["payload"],
        "prev_hash": row["prev_hash"],
        "hash": row["hash"],
    }


class EventStore:
    def __init__(
        self,
        pool: asyncpg.Pool,
        source: str,
        registry: EventRegistry,
        *,
        acquire_timeout_s: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pool = pool
        self.source = source
        self.registry = registry
        self._acquire_timeout_s = acquire_timeout_s
        self._clock = clock
        self._waiting: list[PendingAppend] = []
        # The chain's head as this store's last write left it; another writer may have moved it.
        self._head: tuple[int, str] | None = None
        # The writer that will take what waits, and the one writing the batch it took.
        self._next_writer: asyncio.Task[None] | None = None
        self._writing: asyncio.Task[None] | None = None

    async def append(
        self,
        stream_id: str,
        expected_version: int | None,
        events: Sequence[NewEvent],
        *,
        actor: Actor,
        correlation_id: UUID,
        causation_id: UUID | None = None,
        command: CommandId | None = None,
    ) -> AppendResult:
        """Append ``events`` to ``stream_id`` if it is at ``expected_version`` (None: any).

        With a ``command`` id, a retry of the same command returns the first result and
        appends nothing; the same id with a different request raises IdempotencyKeyReused.
        Written with whatever other appends are waiting (see ``_write_next_batch``).
        """
        if not events:
            raise ValueError("nothing to append")
        loop = asyncio.get_running_loop()
        pending = PendingAppend(
            stream_id=stream_id,
            expected_version=expected_version,
            events=events,
            payloads=[event.payload.model_dump(mode="json") for event in events],
            actor=actor.model_dump(mode="json"),
            correlation_id=correlation_id,
            causation_id=causation_id,
            command=command,
            outcome=loop.create_future(),
        )
        self._waiting.append(pending)
        self._ensure_next_writer(loop)
        return await pending.outcome

    def _ensure_next_writer(self, loop: asyncio.AbstractEventLoop) -> None:
        writer = self._next_writer
        if writer is None or writer.done() or writer.get_loop() is not loop:
            self._next_writer = loop.create_task(
                self._write_next_batch(), name=f"append-{self.source}"
            )

    async def _write_next_batch(self) -> None:
        """Once the batch before is written, take every append waiting and write them together.

        One batch is written at a time, each planned on the head the one before left; appends
        that arrive meanwhile wait for the next. A caller that gave up before its batch was
        taken is not appended; one whose batch was taken is, as a lone append past its last
        statement would be.
        """
        writer = asyncio.current_task()
        loop = asyncio.get_running_loop()
        before = self._writing
        if before is not None and not before.done() and before.get_loop() is loop:
            await asyncio.wait([before])

        def take() -> list[PendingAppend]:
            if self._next_writer is writer:
                self._next_writer = None  # an append arriving from now on needs another
            self._writing = writer
            batch = [p for p in self._waiting[:MAX_BATCH] if not p.outcome.done()]
            del self._waiting[:MAX_BATCH]
            if self._waiting:  # more than a batch waited
                self._ensure_next_writer(loop)
            return batch

        await self._write_batch(take)

    async def _write_batch(self, take: Callable[[], list[PendingAppend]]) -> None:
        """The appends that ``take`` gives, written together; each caller hears its own
        outcome, or the error that failed them all."""
        batch: list[PendingAppend] | None = None
        try:
            async with self.pool.acquire(timeout=self._acquire_timeout_s) as connection:
                batch = take()
                outcomes = await self._append_together(connection, batch) if batch else []
        except asyncpg.IntegrityConstraintViolationError as conflict:
            assert batch is not None  # only the batch's own statements can raise it
            if len(batch) == 1:
                _settle(batch[0], conflict)
                return
            # One append's conflict (e.g. an event id used before) must not fail the others.
            for pending in batch:
                await self._write_batch([pending].copy)  # takes this one alone
            return
        except Exception as error:  # the database is down, a timeout: each caller hears it
            for pending in take() if batch is None else batch:
                _settle(pending, error)
            return
        except BaseException:  # cancelled, the loop closing: nobody waits for ever
            for pending in [*(batch or []), *self._waiting]:
                pending.outcome.cancel()  # does nothing to an outcome already settled
            self._waiting.clear()
            raise
        for pending, outcome in outcomes:
            _settle(pending, outcome)

    async def _append_together(
        self, connection: DbConnection, batch: list[PendingAppend]
    ) -> list[tuple[PendingAppend, AppendResult | Exception]]:
        """Each append checked in turn against what the ones before it left, then written.

        Planned first on what this store's last write left: if that still holds, the batch is
        written and committed in one round trip. Otherwise it is planned on what is read under
        the lock, in a transaction that holds it until the batch is written.
        """
        plan = self._plan_from_last_write(batch)
        if plan is not None and await connection.fetchval(
            APPEND_EVENTS, *self._write_arguments(plan)
        ):
            self._head = (plan.last_position, plan.last_hash)
            EVENTS_APPENDED.labels(self.source).inc(len(plan.rows))
            return plan.outcomes
        async with _locked_transaction(connection):
            # A statement after the lock's: its snapshot sees every append committed before
            # this one could take the lock (within the locking statement it would not).
            now = await connection.fetchrow(
                APPEND_STATE,
                sorted({p.stream_id for p in batch}),
                [p.command.key for p in batch if p.command is not None],
            )
            assert now is not None  # one row, whatever the tables hold
            plan = plan_batch(
                self.source,
                batch,
                versions=now["versions"] or {},
                earlier=now["earlier"] or {},
                head=(now["position"] or 0, now["hash"] or GENESIS_HASH),
                recorded_at=self._clock(),
            )
            if plan.rows and not await connection.fetchval(
                APPEND_EVENTS, *self._write_arguments(plan)
            ):
                raise RuntimeError("the append lock did not keep what was read under it")
        self._head = (plan.last_position, plan.last_hash)
        # Counted here, once committed, so every append counts whoever makes it.
        EVENTS_APPENDED.labels(self.source).inc(len(plan.rows))
        return plan.outcomes

    def _plan_from_last_write(self, batch: list[PendingAppend]) -> BatchPlan | None:
        """A plan that saves reading under the lock, when this store wrote the last events.

        It assumes the chain's head is what this store's last write left, each stream is at the
        version its append expects and no command id was used; the write checks all three,
        under the lock. None when it cannot assume (no write yet, an append to any version, an
        append the plan refuses: those are answered from what is read).
        """
        if self._head is None or any(p.expected_version is None for p in batch):
            return None
        versions: dict[str, int] = {}
        for pending in batch:
            assert pending.expected_version is not None
            versions.setdefault(pending.stream_id, pending.expected_version)
        plan = plan_batch(
            self.source,
            batch,
            versions=versions,
            earlier={},
            head=self._head,
            recorded_at=self._clock(),
        )
        if any(not isinstance(outcome, AppendResult) for _, outcome in plan.outcomes):
            return None
        return plan

    def _write_arguments(self, plan: BatchPlan) -> tuple[object, ...]:
        """The arguments of ``APPEND_EVENTS``, in the function's order."""
        rows, remembered = plan.rows, plan.remembered
        return (
            APPEND_LOCK_KEY,
            self.source,
            plan.recorded_at,
            [fields["position"] for fields, _, _ in rows],
            [event.event_id for _, event, _ in rows],
            [fields["stream_id"] for fields, _, _ in rows],
            [fields["stream_version"] for fields, _, _ in rows],
            [fields["type"] for fields, _, _ in rows],
            [fields["schema_version"] for fields, _, _ in rows],
            [event.occurred_at for _, event, _ in rows],
            [fields["actor"] for fields, _, _ in rows],
            [pending.correlation_id for _, _, pending in rows],
            [pending.causation_id for _, _, pending in rows],
            [fields["payload"] for fields, _, _ in rows],
            [fields["prev_hash"] for fields, _, _ in rows],
            [fields["hash"] for fields, _, _ in rows],
            [key for key, _, _, _ in remembered],
            [fingerprint for _, fingerprint, _, _ in remembered],
            [stream for _, _, stream, _ in remembered],
            [result for _, _, _, result in remembered],
            plan.head_position,
            list(plan.versions_before),
            list(plan.versions_before.values()),
            EVENTS_APPENDED_CHANNEL,
            str(plan.last_position),
        )

    async def earlier_result(self, command: CommandId) -> AppendResult | None:
        """The stored result of an earlier use of ``command``'s id, if any."""
        async with self.pool.acquire(timeout=self._acquire_timeout_s) as connection:
            row = await connection.fetchrow(
                "SELECT fingerprint, result FROM command_results WHERE command_id = $1",
                command.key,
            )
        return None if row is None else _earlier(command, row["fingerprint"], row["result"])

    async def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[Envelope]:
        async with self.pool.acquire(timeout=self._acquire_timeout_s) as connection:
            rows = await connection.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events "
                "WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version",
                stream_id,
                after_version,
            )
        return [envelope_from_row(row) for row in rows]

    async def read_all(self, *, after_position: int = 0, limit: int = 1000) -> list[Envelope]:
        async with self.pool.acquire(timeout=self._acquire_timeout_s) as connection:
            rows = await connection.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 "
                "ORDER BY position LIMIT $2",
                after_position,
                limit,
            )
        return [envelope_from_row(row) for row in rows]

    async def iter_json(
        self, *, after_position: int = 0, until: datetime | None = None, batch: int = 5000
    ) -> AsyncIterator[JsonObject]:
        """Every event's JSON form in position order, read in batches (bounded memory)."""
        last = after_position
        while True:
            async with self.pool.acquire(timeout=self._acquire_timeout_s) as connection:
                rows = await connection.fetch(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 "
                    "AND ($2::timestamptz IS NULL OR recorded_at <= $2) "
                    "ORDER BY position LIMIT $3",
                    last,
                    until,
                    batch,
                )
            for row in rows:
                yield json_from_row(row)
            if len(rows) < batch:
                return
            last = rows[-1]["position"]

    async def load(
        self,
        stream_id: str,
        initial: State,
        evolve: Callable[[State, DomainEvent], State],
    ) -> tuple[State, int]:
        """The aggregate's state folded from its events, and the stream's version."""
        return self._fold(await self.read_stream(stream_id), initial, evolve)

    def _fold(
        self,
        stream: list[Envelope],
        initial: State,
        evolve: Callable[[State, DomainEvent], State],
    ) -> tuple[State, int]:
        state = initial
        for envelope in stream:
            state = evolve(state, envelope.decode(self.registry))
        return state, len(stream)

    async def load_for_command(
        self,
        stream_id: str,
        initial: State,
        evolve: Callable[[State, DomainEvent], State],
        command: CommandId,
    ) -> AppendResult | tuple[State, int]:
        """``command``'s earlier result if its id was used before, else what ``load`` returns.

        One round trip for both: a command with an idempotency key reads them on every call.
        """
        async with self.pool.acquire(timeout=self._acquire_timeout_s) as connection:
            rows = await connection.fetch(STREAM_FOR_COMMAND, stream_id, command.key)
        first = rows[0]  # one row at least, whatever the tables hold
        if first["earlier_fingerprint"] is not None:
            return _earlier(command, first["earlier_fingerprint"], first["earlier_result"])
        stream = [] if first["position"] is None else [envelope_from_row(row) for row in rows]
        return self._fold(stream, initial, evolve)

    async def head(self) -> tuple[int, str]:
        async with self.pool.acquire(timeout=self._acquire_timeout_s) as connection:
            row = await connection.fetchrow(
                "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
            )
        return (row["position"], row["hash"]) if row else (0, GENESIS_HASH)

    async def verify_chain(self) -> ChainReport:
        """Recompute every hash and link; the report names the first bad position and why."""
        verifier = ChainVerifier(self.source)
        async for event in self.iter_json():
            if not verifier.feed(event):
                break
        return verifier.report
