"""Planning a batch of appends (group commit): each checked as if alone, chained in order."""

from __future__ import annotations

import asyncio
import itertools
from uuid import uuid4

from ipmg_shared.envelope import hash_event_fields
from ipmg_shared.store import (
    AppendResult,
    CommandId,
    IdempotencyKeyReused,
    PendingAppend,
    WrongExpectedVersion,
    plan_batch,
)
from tests.support.sample_events import AT, SECRETARIAT, notes

HEAD = (41, "ab" * 32)


def pending(
    stream: str, expected: int | None, *texts: str, command: CommandId | None = None
) -> PendingAppend:
    events = notes(*texts)
    return PendingAppend(
        stream_id=stream,
        expected_version=expected,
        events=events,
        payloads=[event.payload.model_dump(mode="json") for event in events],
        actor=SECRETARIAT.model_dump(mode="json"),
        correlation_id=uuid4(),
        causation_id=None,
        command=command,
        outcome=asyncio.get_running_loop().create_future(),
    )


async def test_a_batch_is_checked_in_order_and_chained_from_the_head() -> None:
    once = CommandId.of("k", {"n": 1})
    stored = AppendResult("note-z", 3, 7, 7, [str(uuid4())]).to_json()
    batch = [
        pending("note-a", 2, "a3", "a4", command=once),
        pending("note-a", 4, "a5"),  # counts on the append before it
        pending("note-a", 4, "stale"),
        pending("note-b", None, "b1"),
        pending("note-c", 0, "again", command=once),  # the same key: the first one's result
        pending("note-c", 0, "x", command=CommandId.of("old", {"n": 2})),  # stored, same request
        pending("note-c", 0, "y", command=CommandId.of("old", {"n": 3})),  # stored, other request
    ]
    earlier = {"old": {"fingerprint": CommandId.of("old", {"n": 2}).fingerprint, "result": stored}}

    plan = plan_batch(
        "notes", batch, versions={"note-a": 2}, earlier=earlier, head=HEAD, recorded_at=AT
    )

    outcomes = [outcome for _, outcome in plan.outcomes]
    first, second, stale, b1, again, old, other = outcomes
    assert isinstance(first, AppendResult)
    assert (first.stream_version, first.first_position, first.last_position) == (4, 42, 43)
    assert isinstance(second, AppendResult)
    assert (second.stream_version, second.first_position) == (5, 44)
    assert isinstance(stale, WrongExpectedVersion)
    assert stale.actual == 5
    assert isinstance(b1, AppendResult)
    assert (b1.stream_version, b1.first_position) == (1, 45)
    assert isinstance(again, AppendResult)
    assert again.replayed
    assert again.to_json() == first.to_json()
    assert isinstance(old, AppendResult)
    assert old.replayed
    assert old.to_json() == stored
    assert isinstance(other, IdempotencyKeyReused)

    rows = [fields for fields, _, _ in plan.rows]
    assert [row["position"] for row in rows] == [42, 43, 44, 45]
    assert plan.last_position == 45
    assert rows[0]["prev_hash"] == HEAD[1]
    for before, row in itertools.pairwise(rows):
        assert row["prev_hash"] == before["hash"]
    assert all(row["hash"] == hash_event_fields(row) for row in rows)
    assert [key for key, _, _, _ in plan.remembered] == ["k"]  # stored once, by its first use
