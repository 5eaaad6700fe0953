"""The application layer of a write service: load, decide, append, for any aggregate.

A command runs against the state folded from its stream's past events; the pure ``decide``
returns new events or refuses; the events are appended with the version that was read, so a
concurrent writer makes the append fail instead of overwriting. Without an explicit expected
version (no ``If-Match``) such a conflict is retried against the fresh state: commands on one
stream take turns within a process, and a conflict with another process is retried with a
short random pause until it succeeds or a deadline passes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid4

from ipmg_shared.actors import Actor
from ipmg_shared.domain import NotFound
from ipmg_shared.events import DomainEvent
from ipmg_shared.store import AppendResult, CommandId, EventStore, NewEvent, WrongExpectedVersion
from ipmg_shared.stream_turns import StreamTurns

State = TypeVar("State")
CONFLICT_RETRY_DEADLINE_S = 10.0
CONFLICT_PAUSE_S = (0.001, 0.05)
_turns = StreamTurns()


@dataclass(frozen=True)
class AggregateType(Generic[State]):
    """An aggregate's pure functions and how its streams are named (``meeting-<uuid>``)."""

    name: str
    initial: Callable[[], State]
    evolve: Callable[[State, DomainEvent], State]
    decide: Callable[[Any, State], list[DomainEvent]]

    def stream_id(self, aggregate_id: UUID) -> str:
        return f"{self.name}-{aggregate_id}"

    def aggregate_id(self, stream_id: str) -> UUID:
        return UUID(stream_id.removeprefix(f"{self.name}-"))


@dataclass(frozen=True)
class CommandContext:
    actor: Actor
    correlation_id: UUID
    expected_version: int | None = None  # from If-Match: a stale one is a conflict, not a retry
    command_id: CommandId | None = None  # from Idempotency-Key


async def load(
    store: EventStore, aggregate: AggregateType[State], aggregate_id: UUID
) -> tuple[State, int]:
    return await store.load(
        aggregate.stream_id(aggregate_id), aggregate.initial(), aggregate.evolve
    )


async def load_existing(
    store: EventStore, aggregate: AggregateType[State], aggregate_id: UUID
) -> tuple[State, int]:
    state, version = await load(store, aggregate, aggregate_id)
    if version == 0:
        raise NotFound(f"{aggregate.name}.not_found", f"no {aggregate.name} {aggregate_id}")
    return state, version


async def execute(
    store: EventStore,
    aggregate: AggregateType[State],
    aggregate_id: UUID,
    command: Any,
    context: CommandContext,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> AppendResult:
    """Decide ``command`` against the aggregate's current state and append what it decided."""
    stream_id = aggregate.stream_id(aggregate_id)
    async with _turns.turn(f"{store.source}/{stream_id}"):
        return await _execute(store, aggregate, stream_id, command, context, now)


async def _execute(
    store: EventStore,
    aggregate: AggregateType[State],
    stream_id: str,
    command: Any,
    context: CommandContext,
    now: Callable[[], datetime],
) -> AppendResult:
    deadline = time.monotonic() + CONFLICT_RETRY_DEADLINE_S
    attempt = 0
    while True:
        if attempt == 0 and context.command_id is not None:
            # A retried command gets its first result, whatever the stream has become since.
            loaded = await store.load_for_command(
                stream_id, aggregate.initial(), aggregate.evolve, context.command_id
            )
            if isinstance(loaded, AppendResult):
                return loaded
            state, version = loaded
        else:
            state, version = await store.load(stream_id, aggregate.initial(), aggregate.evolve)
        if context.expected_version is not None and context.expected_version != version:
            raise WrongExpectedVersion(stream_id, context.expected_version, version)
        events = aggregate.decide(command, state)
        occurred_at = now()
        try:
            result = await store.append(
                stream_id,
                version,
                [NewEvent(event, occurred_at=occurred_at, event_id=uuid4()) for event in events],
                actor=context.actor,
                correlation_id=context.correlation_id,
                command=context.command_id,
            )
        except WrongExpectedVersion:
            if context.expected_version is not None or time.monotonic() > deadline:
                raise
            attempt += 1
            await asyncio.sleep(random.uniform(*CONFLICT_PAUSE_S))
            continue
        return result
