"""The event store against a real PostgreSQL: concurrency, chain, idempotency, append-only."""

from __future__ import annotations

import asyncio
import random
from uuid import uuid4

import asyncpg
import pytest

from ipmg_shared.application import AggregateType, CommandContext, execute
from ipmg_shared.chain import BreakKind
from ipmg_shared.db import create_pool
from ipmg_shared.settings import Settings
from ipmg_shared.store import (
    APPEND_EVENTS,
    APPEND_LOCK_KEY,
    APPEND_STATE,
    BEGIN_LOCKED,
    AppendResult,
    CommandId,
    EventStore,
    IdempotencyKeyReused,
    NewEvent,
    WrongExpectedVersion,
)
from tests.support.sample_events import AT, REGISTRY, SECRETARIAT, NoteRecorded, notes

pytestmark = pytest.mark.infra


@pytest.fixture
def store(service_pool: asyncpg.Pool, service_name: str) -> EventStore:
    return EventStore(service_pool, service_name, REGISTRY)


async def append(store: EventStore, stream: str, expected: int | None, *texts: str) -> None:
    await store.append(stream, expected, notes(*texts), actor=SECRETARIAT, correlation_id=uuid4())


async def test_append_and_read_back_a_stream(store: EventStore) -> None:
    await append(store, "note-a", 0, "first", "second")
    await append(store, "note-b", 0, "other")
    await append(store, "note-a", 2, "third")

    stream = await store.read_stream("note-a")
    assert [e.stream_version for e in stream] == [1, 2, 3]
    assert [e.position for e in stream] == [1, 2, 4]
    assert [e.decode(REGISTRY) for e in stream][2] == NoteRecorded(text="third")
    assert all(e.hash_is_valid for e in stream)
    everything = await store.read_all()
    assert [e.position for e in everything] == [1, 2, 3, 4]
    assert everything[1].prev_hash == everything[0].hash


async def test_stale_expected_version_raises_and_appends_nothing(store: EventStore) -> None:
    await append(store, "note-a", 0, "first")
    with pytest.raises(WrongExpectedVersion) as refused:
        await append(store, "note-a", 0, "conflicting")
    assert refused.value.actual == 1
    assert len(await store.read_all()) == 1


async def test_upcasting_on_read(store: EventStore, admin_connection: asyncpg.Connection) -> None:
    await append(store, "note-a", 0, "written as version 2")
    stored = (await store.read_stream("note-a"))[0]
    assert REGISTRY.decode("NoteRecorded", 1, {"text": "old"}) == NoteRecorded(text="old")
    assert stored.decode(REGISTRY) == NoteRecorded(text="written as version 2")


async def write_at_random(stores: list[EventStore], writers: int, events: int) -> int:
    """``writers`` writers (shared out between ``stores``) appending ``events`` in all to twelve
    streams at the versions they read, retrying on conflicts; returns how many conflicts."""
    streams = [f"note-{i}" for i in range(12)]
    each = events // writers
    conflicts = 0

    async def writer(seed: int) -> int:
        store = stores[seed % len(stores)]
        rng = random.Random(seed)
        written = 0
        nonlocal conflicts
        while written < each:
            stream = rng.choice(streams)
            version = (await store.read_stream(stream))[-1:]
            expected = version[0].stream_version if version else 0
            batch = min(rng.randint(1, 5), each - written)
            try:
                await append(
                    store, stream, expected, *[f"w{seed}-{written + i}" for i in range(batch)]
                )
            except WrongExpectedVersion:
                conflicts += 1
                continue
            written += batch
        return written

    totals = await asyncio.gather(*(writer(seed) for seed in range(writers)))
    assert sum(totals) == events

    everything = [e async for e in stores[0].iter_json()]
    assert [e["position"] for e in everything] == list(range(1, events + 1))
    for stream in streams:
        versions = [e["stream_version"] for e in everything if e["stream_id"] == stream]
        assert versions == list(range(1, len(versions) + 1))
    report = await stores[0].verify_chain()
    assert report.ok, report.first_break
    assert report.events == events
    return conflicts


async def test_eight_concurrent_writers_keep_positions_gap_free_and_in_commit_order(
    store: EventStore,
) -> None:
    conflicts = await write_at_random([store], writers=8, events=4000)
    assert conflicts > 0, "overlapping streams must produce optimistic-concurrency conflicts"


async def test_two_stores_on_one_database_each_see_what_the_other_appended(
    postgres: Settings, service_name: str, service_pool: asyncpg.Pool
) -> None:
    """Two processes of one service: each plans on the head its own last write left, and
    the other's appends in between must be found under the lock, not overwritten."""
    other_pool = await create_pool(postgres.service_dsn(service_name), postgres, max_size=6)
    try:
        stores = [
            EventStore(service_pool, service_name, REGISTRY),
            EventStore(other_pool, service_name, REGISTRY),
        ]
        conflicts = await write_at_random(stores, writers=8, events=2000)
        assert conflicts > 0
        # One store appends after the other: its next append must still find the head moved.
        await append(stores[0], "note-x", 0, "first")
        await append(stores[1], "note-y", 0, "second")
        await append(stores[0], "note-x", 1, "third")
        with pytest.raises(WrongExpectedVersion):
            await append(stores[1], "note-x", 1, "stale")
        command = CommandId.of("key-5", {"text": "once"})
        for store in stores:
            await store.append(
                "note-z",
                None,
                notes("once"),
                actor=SECRETARIAT,
                correlation_id=uuid4(),
                command=command,
            )
        assert [e.stream_id for e in (await stores[0].read_all(after_position=2000))] == [
            "note-x",
            "note-y",
            "note-x",
            "note-z",
        ]
        assert (await stores[1].verify_chain()).ok
    finally:
        await other_pool.close()


async def test_a_store_that_wrote_last_appends_in_one_round_trip(
    postgres: Settings, service_name: str
) -> None:
    statements: list[str] = []
    # One connection, which keeps the logger between the store's acquires.
    pool = await create_pool(postgres.service_dsn(service_name), postgres, min_size=1, max_size=1)
    async with pool.acquire() as connection:
        connection.add_query_logger(lambda query: statements.append(query.query))
    try:
        store = EventStore(pool, service_name, REGISTRY)
        await append(store, "note-a", 0, "first: reads the head under the lock")
        statements.clear()
        await append(store, "note-a", 1, "second: planned on the first")
        assert statements == [APPEND_EVENTS]  # the lock, the check and the write: one trip
        statements.clear()
        # Expecting any version, it cannot be planned without reading.
        await append(store, "note-a", None, "third")
        assert statements == [BEGIN_LOCKED, APPEND_STATE, APPEND_EVENTS, "COMMIT"]
        assert [e.stream_version for e in await store.read_stream("note-a")] == [1, 2, 3]
        assert (await store.verify_chain()).ok
    finally:
        await pool.close()


async def test_a_late_committing_writer_cannot_leave_a_hole_behind_it(
    store: EventStore, service_pool: asyncpg.Pool
) -> None:
    """A transaction that holds the append lock and sleeps before commit: the next append waits,
    so a reader of 'position > n' never sees n+2 before n+1."""
    async with service_pool.acquire() as slow, slow.transaction():
        await slow.execute("SELECT pg_advisory_xact_lock($1)", 0x1A11_0010)
        racing = asyncio.create_task(append(store, "note-b", 0, "waits for the lock"))
        await asyncio.sleep(0.5)
        assert not racing.done()
        assert await store.read_all() == []
    await racing
    assert [e.position for e in await store.read_all()] == [1]


async def test_idempotent_command_returns_first_result_and_appends_nothing(
    store: EventStore,
) -> None:
    command = CommandId.of("key-1", {"text": "once"})
    first = await store.append(
        "note-a", 0, notes("once"), actor=SECRETARIAT, correlation_id=uuid4(), command=command
    )
    again = await store.append(
        "note-a", 0, notes("once"), actor=SECRETARIAT, correlation_id=uuid4(), command=command
    )
    assert again.replayed
    assert not first.replayed
    assert again.to_json() == first.to_json()
    assert len(await store.read_all()) == 1
    with pytest.raises(IdempotencyKeyReused):
        await store.append(
            "note-a",
            1,
            notes("different"),
            actor=SECRETARIAT,
            correlation_id=uuid4(),
            command=CommandId.of("key-1", {"text": "different"}),
        )


async def test_concurrent_retries_of_one_command_append_once(store: EventStore) -> None:
    command = CommandId.of("key-2", {"text": "racing"})
    results = await asyncio.gather(
        *(
            store.append(
                "note-a",
                None,
                notes("racing"),
                actor=SECRETARIAT,
                correlation_id=uuid4(),
                command=command,
            )
            for _ in range(6)
        )
    )
    assert sum(not result.replayed for result in results) == 1
    assert len(await store.read_all()) == 1


async def test_service_role_cannot_update_or_delete_events(
    store: EventStore, service_pool: asyncpg.Pool
) -> None:
    await append(store, "note-a", 0, "kept forever")
    async with service_pool.acquire() as connection:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("UPDATE events SET payload = '{}'::jsonb")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("DELETE FROM events")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("TRUNCATE events")


async def test_even_the_owner_is_refused_by_the_trigger(
    store: EventStore, admin_connection: asyncpg.Connection
) -> None:
    await append(store, "note-a", 0, "kept forever")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await admin_connection.execute("UPDATE events SET payload = '{}'::jsonb")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await admin_connection.execute("DELETE FROM events")


async def tamper(connection: asyncpg.Connection, sql: str) -> None:
    """What an intruder with superuser rights does: turn the triggers off, change history."""
    async with connection.transaction():
        await connection.execute(DISABLE_TRIGGERS)
        await connection.execute(sql)
        await connection.execute(ENABLE_TRIGGERS)


# A replica session no longer bypasses them (they fire ALWAYS); the table's owner still can.
DISABLE_TRIGGERS = "ALTER TABLE events DISABLE TRIGGER USER"
ENABLE_TRIGGERS = (
    "ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_only;"
    "ALTER TABLE events ENABLE ALWAYS TRIGGER events_no_truncate"
)


@pytest.mark.parametrize(
    ("sql", "position", "kind"),
    [
        (
            "UPDATE events SET payload = jsonb_set(payload, '{text}', '\"forged\"') "
            "WHERE position = 5",
            5,
            BreakKind.CHANGED,
        ),
        ("DELETE FROM events WHERE position = 4", 4, BreakKind.MISSING),
        (
            "UPDATE events SET position = -position WHERE position IN (6, 7);"
            "UPDATE events SET position = 13 - (-position) WHERE position IN (-6, -7)",
            6,
            BreakKind.REORDERED,
        ),
    ],
    ids=["changed", "deleted", "swapped"],
)
async def test_verify_chain_pinpoints_tampering(
    store: EventStore,
    admin_connection: asyncpg.Connection,
    sql: str,
    position: int,
    kind: BreakKind,
) -> None:
    for i in range(10):
        await append(store, f"note-{i % 3}", None, f"event {i}")
    assert (await store.verify_chain()).ok
    await admin_connection.execute("ALTER TABLE events DROP CONSTRAINT events_position_check")
    await tamper(admin_connection, sql)
    report = await store.verify_chain()
    assert report.first_break is not None
    assert (report.first_break.position, report.first_break.kind) == (position, kind)


async def test_appends_waiting_together_are_written_together_each_answered_as_if_alone(
    store: EventStore, service_pool: asyncpg.Pool
) -> None:
    """While the lock is held elsewhere, appends pile up; they then go in one transaction, and
    each gets what it would have got alone, in the order they arrived."""
    first = CommandId.of("together-1", {"text": "first"})

    def appending(
        stream: str, expected: int | None, text: str, command: CommandId | None = None
    ) -> asyncio.Task[AppendResult]:
        return asyncio.create_task(
            store.append(
                stream,
                expected,
                notes(text),
                actor=SECRETARIAT,
                correlation_id=uuid4(),
                command=command,
            )
        )

    async with service_pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK_KEY)
        ahead = appending("note-0", 0, "takes the store's writer, waits for the lock")
        await asyncio.sleep(0.2)
        tasks = [
            appending("note-a", 0, "a1", first),
            appending("note-a", 1, "a2"),  # counts on a1, in the same batch
            appending("note-a", 1, "stale"),  # a2 took version 2
            appending("note-b", None, "b1"),
            appending("note-c", 0, "a1 again", first),  # the same command: its first result
            appending("note-c", 0, "other", CommandId.of("together-1", {"text": "other"})),
        ]
        await asyncio.sleep(0.2)
        assert not any(task.done() for task in [ahead, *tasks])
    await ahead
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)

    a1, a2, stale, b1, replayed, reused = outcomes
    assert isinstance(a1, AppendResult)
    assert isinstance(a2, AppendResult)
    assert (a1.stream_version, a2.stream_version) == (1, 2)
    assert isinstance(stale, WrongExpectedVersion)
    assert stale.actual == 2
    assert isinstance(b1, AppendResult)
    assert b1.stream_version == 1
    assert isinstance(replayed, AppendResult)
    assert replayed.replayed
    assert replayed.to_json() == a1.to_json()
    assert isinstance(reused, IdempotencyKeyReused)
    stored = await store.read_all()
    assert [(e.stream_id, e.position) for e in stored] == [
        ("note-0", 1),
        ("note-a", 2),
        ("note-a", 3),
        ("note-b", 4),
    ]
    # The three appended after the first went in one transaction: one recorded_at.
    assert len({e.recorded_at for e in stored[1:]}) == 1
    assert (await store.verify_chain()).ok


async def test_one_appends_conflict_fails_it_alone_and_a_caller_gone_appends_nothing(
    store: EventStore, service_pool: asyncpg.Pool
) -> None:
    used = uuid4()
    await store.append(
        "note-a",
        0,
        [NewEvent(NoteRecorded(text="first"), AT, used)],
        actor=SECRETARIAT,
        correlation_id=uuid4(),
    )
    async with service_pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK_KEY)
        ahead = asyncio.create_task(append(store, "note-0", 0, "waits for the lock"))
        await asyncio.sleep(0.2)
        reusing = asyncio.create_task(
            store.append(
                "note-b",
                0,
                [NewEvent(NoteRecorded(text="same id"), AT, used)],
                actor=SECRETARIAT,
                correlation_id=uuid4(),
            )
        )
        fine = asyncio.create_task(append(store, "note-c", 0, "fine"))
        gone = asyncio.create_task(append(store, "note-d", 0, "its caller gives up"))
        await asyncio.sleep(0.2)
        gone.cancel()
    await ahead
    with pytest.raises(asyncpg.UniqueViolationError):
        await reusing
    await fine
    with pytest.raises(asyncio.CancelledError):
        await gone
    streams = [e.stream_id for e in await store.read_all()]
    assert streams == ["note-a", "note-0", "note-c"]
    assert (await store.verify_chain()).ok


NOTES = AggregateType[list[str]](
    name="note",
    initial=list,
    evolve=lambda texts, event: [*texts, event.text] if isinstance(event, NoteRecorded) else texts,
    decide=lambda text, texts: [] if text in texts else [NoteRecorded(text=text)],
)


async def test_a_command_with_a_key_reads_its_first_result_or_its_stream_in_one_trip(
    store: EventStore,
) -> None:
    note = uuid4()
    stream = NOTES.stream_id(note)
    command = CommandId.of("key-3", {"text": "once"})
    assert await store.load_for_command(stream, NOTES.initial(), NOTES.evolve, command) == ([], 0)

    context = CommandContext(SECRETARIAT, uuid4(), command_id=command)
    first = await execute(store, NOTES, note, "once", context)
    await execute(store, NOTES, note, "later", CommandContext(SECRETARIAT, uuid4()))
    other = CommandId.of("key-4", {"text": "new"})
    assert await store.load_for_command(stream, NOTES.initial(), NOTES.evolve, other) == (
        ["once", "later"],
        2,
    )

    # The stream has moved on since: the retry still gets the first answer, and appends nothing.
    again = await execute(store, NOTES, note, "once", context)
    assert again.replayed
    assert again.to_json() == first.to_json()
    assert [e.stream_version for e in await store.read_stream(stream)] == [1, 2]
    reused = CommandContext(SECRETARIAT, uuid4(), command_id=CommandId.of("key-3", "other"))
    with pytest.raises(IdempotencyKeyReused):
        await execute(store, NOTES, note, "other", reused)
    assert len(await store.read_all()) == 2


async def test_an_append_that_cannot_take_the_lock_appends_nothing_and_leaves_no_transaction(
    postgres: Settings, service_name: str, service_pool: asyncpg.Pool
) -> None:
    # One connection, so the append after the failed one reuses its session.
    impatient = await create_pool(
        postgres.service_dsn(service_name),
        postgres,
        min_size=1,
        max_size=1,
        server_settings={"lock_timeout": "200ms"},
    )
    # asyncpg rolls back what a released connection left open, and says so to the loop.
    complaints: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: complaints.append(context["message"]))
    try:
        store = EventStore(impatient, service_name, REGISTRY)
        # The first append is read under the lock, in a transaction; the next is planned on
        # it and takes the lock in its one statement. Either way the timeout leaves nothing.
        for version, refused, accepted in [(0, "refused", "accepted"), (1, "no", "yes")]:
            async with service_pool.acquire() as holder, holder.transaction():
                await holder.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK_KEY)
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await append(store, "note-a", version, refused)
                async with impatient.acquire() as connection:
                    assert not connection.is_in_transaction()
            await append(store, "note-a", version, accepted)
        assert [e.decode(REGISTRY) for e in await store.read_all()] == [
            NoteRecorded(text="accepted"),
            NoteRecorded(text="yes"),
        ]
        assert complaints == []
    finally:
        loop.set_exception_handler(None)
        await impatient.close()
