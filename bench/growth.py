"""Growth: the append's cost as the store's history grows, to show it does not grow with it.

An append reads the head by ``ORDER BY position DESC LIMIT 1`` and the stream's version by
``max(stream_version)``, both index lookups, so its cost should stay flat from 10^4 to 10^6
stored events. The history is filled in bulk by SQL (streams of ten events, like the checklists
the commands tick); its hashes are placeholders, as the append reads only the head's. At each
size, ours ticks an item on checklists drawn at random from the whole history (1 event per
command, 1 writer) twice over: through ``execute`` (which also loads the stream: a read of
random pages, which stop fitting in PostgreSQL's buffers as the table grows) and through
``EventStore.append`` alone (the same append, with its command id, on the version the fill
left). Beside them the raw INSERT into the same table, whose cost grows only with the indexes.
The ratios against it, compared with the smallest size, say whether anything grew.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID, uuid4

from bench.append import POOL_SIZE, SECRETARIAT, CommandPath, RawInsert
from bench.checklist import AT, CHECKLIST, NOTE, REGISTRY, ItemTicked, items
from bench.measure import Case, Stopwatch, Timing
from bench.progress import say
from bench.workspace import Workspace
from ipmg_shared.store import EVENT_COLUMNS, CommandId, EventStore, NewEvent

STREAM_LENGTH = 10
FILLED = "filled history"  # the title of the checklists the fill opens
FILL_CHUNK = 100_000

# Streams of ten events: opened, then items 1 to 9 ticked. $1 is the first position filled.
FILL = f"""
INSERT INTO events ({EVENT_COLUMNS})
SELECT g, gen_random_uuid(),
       'checklist-' || md5('history-' || $1 || '-' || n / {STREAM_LENGTH})::uuid,
       n % {STREAM_LENGTH} + 1,
       CASE WHEN n % {STREAM_LENGTH} = 0 THEN 'ChecklistOpened' ELSE 'ItemTicked' END,
       1, $3, $4, now(), $5, gen_random_uuid(), NULL,
       CASE WHEN n % {STREAM_LENGTH} = 0 THEN jsonb_build_object('title', $6::text)
            ELSE jsonb_build_object('item', 'item-' || n % {STREAM_LENGTH}, 'note', $7::text)
       END,
       encode(sha256(int8send(g - 1)), 'hex'), encode(sha256(int8send(g)), 'hex')
FROM generate_series($1::bigint, $2::bigint) AS g
CROSS JOIN LATERAL (SELECT g - $1::bigint AS n) AS offsets
"""


@dataclass(frozen=True)
class GrowthSizes:
    history: tuple[int, ...]
    commands: int
    rounds: int


class Growth:
    def __init__(self, space: Workspace, source: str) -> None:
        self.space = space
        self.source = source
        self.used: set[str] = set()

    async def fill_to(self, size: int) -> None:
        """Fill whole streams until at least ``size`` events are stored; then analyse."""
        admin = await self.space.admin(self.source)
        try:
            head = await admin.fetchval("SELECT coalesce(max(position), 0) FROM events")
            while head < size:
                count = min(FILL_CHUNK, size - head)
                count += -count % STREAM_LENGTH
                await admin.execute(
                    FILL,
                    head + 1,
                    head + count,
                    self.source,
                    AT,
                    SECRETARIAT.model_dump(mode="json"),
                    FILLED,
                    NOTE,
                )
                head += count
            # As a long-lived store would be: planner statistics current, dirty pages written.
            await admin.execute("ANALYZE events")
            await admin.execute("CHECKPOINT")
        finally:
            await admin.close()

    async def draw(self, count: int) -> list[UUID]:
        """Checklists of the filled history not yet ticked by this benchmark, at random."""
        admin = await self.space.admin(self.source)
        try:
            rows = await admin.fetch(
                "SELECT stream_id FROM events WHERE type = 'ChecklistOpened' "
                "AND payload->>'title' = $1 ORDER BY random() LIMIT $2",
                FILLED,
                count + len(self.used),
            )
        finally:
            await admin.close()
        fresh = [row["stream_id"] for row in rows if row["stream_id"] not in self.used][:count]
        if len(fresh) < count:
            raise RuntimeError("too few checklists left in the history: fewer commands or rounds")
        self.used.update(fresh)
        return [UUID(stream.removeprefix("checklist-")) for stream in fresh]


class StoreAppend:
    """The append alone: what ``execute`` does after loading, on a stream the fill made."""

    name = "ipmg EventStore.append()"

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def run(self, checklists: list[UUID], items: tuple[str, ...], writers: int) -> Timing:
        assert writers == 1
        watch = Stopwatch()
        for checklist in checklists:
            events = [NewEvent(ItemTicked(item=item, note=NOTE), occurred_at=AT) for item in items]
            request = {"checklist": str(checklist), "items": list(items)}
            await self.store.append(
                CHECKLIST.stream_id(checklist),
                STREAM_LENGTH,
                events,
                actor=SECRETARIAT,
                correlation_id=uuid4(),
                command=CommandId.of(f"{checklist}:append", request),
            )
        return watch.stop()


async def run(space: Workspace, sizes: GrowthSizes) -> list[Case]:
    source = await space.event_store("growth")
    store = EventStore(await space.pool(source, size=POOL_SIZE), source, REGISTRY)
    ours, append = CommandPath(store), StoreAppend(store)
    raw = RawInsert(await space.pool(source, size=POOL_SIZE), source)
    growth = Growth(space, source)
    cases = []
    try:
        for size in sizes.history:
            await growth.fill_to(size)
            names = [ours.name, append.name, raw.name]
            case = Case("growth", f"{size:,}", names, "commands", ours_count=2)
            cases.append(case)
            for round_ in range(sizes.rounds):
                # Everyone's checklists first, then the timed runs back to back.
                prepared = {
                    ours.name: await growth.draw(sizes.commands),
                    append.name: await growth.draw(sizes.commands),
                    raw.name: await raw.prepare(sizes.commands),
                }
                entrants = (ours, append, raw)[:: 1 if round_ % 2 == 0 else -1]
                for entrant in entrants:
                    checklists = prepared[entrant.name]
                    timing = await entrant.run(checklists, items(STREAM_LENGTH)[-1:], 1)
                    rate = case.record(entrant.name, len(checklists), timing)
                    say(f"growth r{round_ + 1} {size:>9,} {entrant.name:24} {rate:8.0f} cmd/s")
    finally:
        await ours.close()
        await raw.close()
    return cases
