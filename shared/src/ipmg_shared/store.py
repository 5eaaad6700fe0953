"""The event store of one service, on PostgreSQL (asyncpg).

Appends are serialised per store with a transaction-scoped advisory lock, so the global
``position`` is gap-free and equal to commit order: a reader of ``position > n`` can never
skip an event that commits late. Each event is hash-chained to the one before it inside the
same transaction, and a command id (``Idempotency-Key``) is stored with its result there too.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
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

if TYPE_CHECKING:
    from ipmg_shared.db import DbConnection

APPEND_LOCK_KEY = 0x1A11_0010
EVENTS_APPENDED_CHANNEL = "ipmg_events_appended"
EVENT_COLUMNS = (
    "position, event_id, stream_id, stream_version, type, schema_version, source, occurred_at, "
    "recorded_at, actor, correlation_id, causation_id, payload, prev_hash, hash"
)

# What an append needs to know, read in one statement once the lock is held: the stream's
# version, the head of the chain and, for a command id, an earlier result.
APPEND_STATE = """
SELECT (SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1) AS current,
       head.position, head.hash, earlier.fingerprint, earlier.result
FROM (SELECT 1) AS here
LEFT JOIN LATERAL (SELECT position, hash FROM events ORDER BY position DESC LIMIT 1) AS head
       ON true
LEFT JOIN command_results AS earlier ON earlier.command_id = $2
"""
# The events, the command's result and the relay's wake-up, written in one statement.
APPEND_EVENTS = f"""
WITH appended AS (
    INSERT INTO events ({EVENT_COLUMNS})
    SELECT position, event_id, $1, stream_version, type, schema_version, $2, occurred_at, $3,
           $4, $5, $6, payload, prev_hash, hash
    FROM unnest($7::bigint[], $8::uuid[], $9::int[], $10::text[], $11::int[],
                $12::timestamptz[], $13::jsonb[], $14::text[], $15::text[])
         AS e(position, event_id, stream_version, type, schema_version, occurred_at, payload,
              prev_hash, hash)
), remembered AS (
    INSERT INTO command_results (command_id, fingerprint, stream_id, result)
    SELECT $16, $17, $1, $18 WHERE $16::text IS NOT NULL
)
SELECT pg_notify($19, $20)
"""

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
        Three round trips under the lock: take it, read what the append needs, write it all.
        """
        if not events:
            raise ValueError("nothing to append")
        actor_json = actor.model_dump(mode="json")
        payloads = [event.payload.model_dump(mode="json") for event in events]
        async with (
            self.pool.acquire(timeout=self._acquire_timeout_s) as connection,
            connection.transaction(),
        ):
            await connection.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK_KEY)
            # A statement after the lock's: its snapshot sees every append committed before
            # this one could take the lock (within the locking statement it would not).
            now = await connection.fetchrow(
                APPEND_STATE, stream_id, None if command is None else command.key
            )
            assert now is not None  # one row, whatever the tables hold
            if command is not None and now["fingerprint"] is not None:
                if now["fingerprint"] != command.fingerprint:
                    raise IdempotencyKeyReused(command.key)
                return AppendResult.from_json(now["result"], replayed=True)
            current: int = now["current"]
            if expected_version is not None and current != expected_version:
                raise WrongExpectedVersion(stream_id, expected_version, current)
            position: int = now["position"] or 0
            prev_hash: str = now["hash"] or GENESIS_HASH
            recorded_at = self._clock()
            rows: list[JsonObject] = []
            for offset, (event, payload) in enumerate(zip(events, payloads, strict=True)):
                position += 1
                fields: JsonObject = {
                    "event_id": str(event.event_id),
                    "type": event.payload.event_type,
                    "schema_version": event.payload.schema_version,
                    "source": self.source,
                    "stream_id": stream_id,
                    "stream_version": current + offset + 1,
                    "position": position,
                    "occurred_at": format_instant(event.occurred_at),
                    "recorded_at": format_instant(recorded_at),
                    "actor": actor_json,
                    "correlation_id": str(correlation_id),
                    "causation_id": None if causation_id is None else str(causation_id),
                    "payload": payload,
                    "prev_hash": prev_hash,
                }
                prev_hash = fields["hash"] = hash_event_fields(fields)
                rows.append(fields)
            result = AppendResult(
                stream_id=stream_id,
                stream_version=current + len(events),
                first_position=rows[0]["position"],
                last_position=position,
                event_ids=[row["event_id"] for row in rows],
            )
            await connection.execute(
                APPEND_EVENTS,
                stream_id,
                self.source,
                recorded_at,
                actor_json,
                correlation_id,
                causation_id,
                [row["position"] for row in rows],
                [event.event_id for event in events],
                [row["stream_version"] for row in rows],
                [row["type"] for row in rows],
                [row["schema_version"] for row in rows],
                [event.occurred_at for event in events],
                payloads,
                [row["prev_hash"] for row in rows],
                [row["hash"] for row in rows],
                None if command is None else command.key,
                None if command is None else command.fingerprint,
                None if command is None else result.to_json(),
                EVENTS_APPENDED_CHANNEL,
                str(position),
            )
        return result

    async def _earlier_result(
        self, connection: DbConnection, command: CommandId
    ) -> AppendResult | None:
        row = await connection.fetchrow(
            "SELECT fingerprint, result FROM command_results WHERE command_id = $1", command.key
        )
        if row is None:
            return None
        if row["fingerprint"] != command.fingerprint:
            raise IdempotencyKeyReused(command.key)
        return AppendResult.from_json(row["result"], replayed=True)

    async def earlier_result(self, command: CommandId) -> AppendResult | None:
        async with self.pool.acquire(timeout=self._acquire_timeout_s) as connection:
            return await self._earlier_result(connection, command)

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
        state = initial
        envelopes = await self.read_stream(stream_id)
        for envelope in envelopes:
            state = evolve(state, envelope.decode(self.registry))
        return state, len(envelopes)

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
