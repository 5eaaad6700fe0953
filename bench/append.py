"""Append: commands through the real command path, beside a raw INSERT and the library.

Every contender ticks items on checklists that were opened beforehand (untimed), one command per
checklist, so each command loads a one-event stream, decides and appends 1 or 10 events in one
transaction. Ours goes through ``ipmg_shared.application.execute`` with an idempotency key:
load, decide, then the serialised append with its hash chain. The raw baseline inserts the same
rows (same columns, same JSON) with asyncpg, one transaction per command, and nothing else: it
is the floor of what PostgreSQL needs for the work, not an event store.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar
from uuid import UUID, uuid4

import asyncpg

from bench.checklist import CHECKLIST, NOTE, REGISTRY, OpenChecklist, TickItems, items
from bench.measure import Case, Stopwatch, Timing
from bench.progress import say
from bench.workspace import Workspace
from ipmg_shared.actors import Actor, Role, Unit
from ipmg_shared.application import CommandContext, execute
from ipmg_shared.store import EVENT_COLUMNS, CommandId, EventStore

SECRETARIAT = Actor(subject="staff@ncsw.gov.pk", unit=Unit.NCSW, role=Role.SECRETARIAT)
INSERT_EVENT = (
    f"INSERT INTO events ({EVENT_COLUMNS}) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
)
CASES = ((1, 1), (1, 8), (10, 1), (10, 8))  # (events per command, concurrent writers)
POOL_SIZE = 8

Item = TypeVar("Item")


@dataclass(frozen=True)
class AppendSizes:
    commands: dict[int, int]  # events per command -> commands in one timed run
    rounds: int


class Contender(Protocol):
    name: str

    async def prepare(self, count: int) -> list[UUID]: ...

    async def run(self, checklists: list[UUID], items: tuple[str, ...], writers: int) -> Timing: ...

    async def close(self) -> None: ...


async def in_parallel(
    work: Sequence[Item], writers: int, each: Callable[[Item], Awaitable[object]]
) -> None:
    """``writers`` tasks, each doing its share of ``work`` one item after the other."""

    async def writer(share: Sequence[Item]) -> None:
        for item in share:
            await each(item)

    await asyncio.gather(*(writer(work[n::writers]) for n in range(writers)))


class CommandPath:
    """Ours: the write services' command path, with an idempotency key on every command."""

    name = "ipmg execute()"

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def _execute(self, checklist: UUID, command: OpenChecklist | TickItems) -> None:
        request = {"checklist": str(checklist), "command": repr(command)}
        context = CommandContext(
            actor=SECRETARIAT,
            correlation_id=uuid4(),
            command_id=CommandId.of(f"{checklist}:{type(command).__name__}", request),
        )
        await execute(self.store, CHECKLIST, checklist, command, context)

    async def prepare(self, count: int) -> list[UUID]:
        checklists = [uuid4() for _ in range(count)]
        opening = OpenChecklist(title="quarterly follow-up")
        await in_parallel(checklists, POOL_SIZE, lambda c: self._execute(c, opening))
        return checklists

    async def run(self, checklists: list[UUID], items: tuple[str, ...], writers: int) -> Timing:
        ticking = TickItems(items=items)
        watch = Stopwatch()
        await in_parallel(checklists, writers, lambda c: self._execute(c, ticking))
        return watch.stop()

    async def close(self) -> None:
        await self.store.pool.close()


class RawInsert:
    """The floor: the same rows inserted as they are, one transaction per command."""

    name = "raw asyncpg INSERT"

    def __init__(self, pool: asyncpg.Pool, source: str) -> None:
        self.pool = pool
        self.source = source
        self.actor = SECRETARIAT.model_dump(mode="json")
        self._positions = itertools.count(1)  # continued from the head before each write

    def _row(
        self, checklist: UUID, version: int, type_: str, payload: object
    ) -> tuple[object, ...]:
        position = next(self._positions)
        now = datetime.now(UTC)
        return (
            position,
            uuid4(),
            CHECKLIST.stream_id(checklist),
            version,
            type_,
            1,
            self.source,
            now,
            now,
            self.actor,
            uuid4(),
            None,
            payload,
            f"{position - 1:064x}",
            f"{position:064x}",
        )

    async def _continue_from_head(self) -> None:
        # Nothing else writes while this contender does: a counter keeps positions unique.
        async with self.pool.acquire(timeout=10) as connection:
            head = await connection.fetchval("SELECT coalesce(max(position), 0) FROM events")
        self._positions = itertools.count(head + 1)

    async def prepare(self, count: int) -> list[UUID]:
        checklists = [uuid4() for _ in range(count)]
        opened = {"title": "quarterly follow-up"}
        await self._continue_from_head()
        async with self.pool.acquire(timeout=10) as connection, connection.transaction():
            await connection.executemany(
                INSERT_EVENT, [self._row(c, 1, "ChecklistOpened", opened) for c in checklists]
            )
        return checklists

    async def run(self, checklists: list[UUID], items: tuple[str, ...], writers: int) -> Timing:
        async def command(checklist: UUID) -> None:
            rows = [
                self._row(checklist, version, "ItemTicked", {"item": item, "note": NOTE})
                for version, item in enumerate(items, start=2)
            ]
            async with self.pool.acquire(timeout=10) as connection, connection.transaction():
                await connection.executemany(INSERT_EVENT, rows)

        await self._continue_from_head()
        watch = Stopwatch()
        await in_parallel(checklists, writers, command)
        return watch.stop()

    async def close(self) -> None:
        await self.pool.close()


async def contenders(space: Workspace) -> list[Contender]:
    from bench.library import LibraryContender

    ours = await space.event_store("append")
    raw = await space.event_store("raw")
    library = await space.library_database("library")
    return [
        CommandPath(EventStore(await space.pool(ours, size=POOL_SIZE), ours, REGISTRY)),
        RawInsert(await space.pool(raw, size=POOL_SIZE), raw),
        LibraryContender(space.settings.service_dsn(library), POOL_SIZE),
    ]


async def run(space: Workspace, sizes: AppendSizes) -> list[Case]:
    entrants = await contenders(space)
    cases = {
        (per_command, writers): Case(
            "append",
            f"{per_command} event{'s' if per_command > 1 else ''}/command, "
            f"{writers} writer{'s' if writers > 1 else ''}",
            [entrant.name for entrant in entrants],
            "commands",
            per_command,
        )
        for per_command, writers in CASES
    }
    try:
        for entrant in entrants:  # connections opened, statements prepared, caches warm
            await entrant.run(await entrant.prepare(2 * POOL_SIZE), items(1), POOL_SIZE)
        for round_ in range(sizes.rounds):
            # Who goes first turns with the round, so no one always follows the same neighbour.
            order = entrants[round_ % len(entrants) :] + entrants[: round_ % len(entrants)]
            for (per_command, writers), case in cases.items():
                count = sizes.commands[per_command]
                # Everyone's checklists first, then the timed runs back to back.
                prepared = [await entrant.prepare(count) for entrant in order]
                for entrant, checklists in zip(order, prepared, strict=True):
                    timing = await entrant.run(checklists, items(per_command), writers)
                    rate = case.record(entrant.name, count, timing)
                    say(f"append r{round_ + 1} {case.name:28} {entrant.name:22} {rate:8.0f} cmd/s")
    finally:
        for entrant in entrants:
            await entrant.close()
    return list(cases.values())
