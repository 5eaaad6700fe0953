"""The watch's follower, record by record: order across partitions, harmless re-publishes,
forged copies, and a resume from a saved head that verifies nothing twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ipmg_shared.audit_follow import TopicFollower
from ipmg_shared.audit_watch_state import SavedHead, WatchState
from ipmg_shared.chain import BreakKind
from ipmg_shared.envelope import hash_event_fields
from tests.unit.shared.test_chain_properties import chain


def follower(saved: SavedHead | None = None) -> TopicFollower:
    return TopicFollower(saved or SavedHead("notes", "t"), dict)


def record(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def test_records_out_of_order_across_partitions_are_verified_in_position_order() -> None:
    events = chain([f"n{i}" for i in range(6)], streams=2)
    watch = follower()
    # Partition 1 holds the odd positions and is read first.
    for offset, event in enumerate(events[0::2]):
        assert watch.take(record(event), 1, offset) is None
    assert watch.head[0] == 1
    assert watch.next_offsets() == {1: 1}  # positions 3 and 5 are read again after a restart
    for offset, event in enumerate(events[1::2]):
        assert watch.take(record(event), 0, offset) is None
    assert watch.head == (6, events[-1]["hash"])
    assert watch.events_verified == 6
    assert watch.next_offsets() == {0: 3, 1: 3}


def test_a_republished_copy_is_harmless_and_a_forged_one_is_a_break() -> None:
    events = chain(["a", "b", "c"], streams=1)
    watch = follower()
    for offset, event in enumerate(events):
        watch.take(record(event), 0, offset)
    assert watch.take(record(events[1]), 0, 3) is None
    forged = {**events[1], "payload": {"text": "forged", "unit": "ncsw"}}
    found = watch.take(record(forged), 0, 4)
    assert found is not None
    assert (found.chain_break.position, found.chain_break.kind) == (2, BreakKind.CHANGED)
    assert found.event_id == events[1]["event_id"]
    assert found.stream_id == events[1]["stream_id"]
    assert watch.take(record(events[2]), 0, 5) is None  # stopped: reported once


def test_a_rehashed_forgery_at_a_verified_position_disagrees() -> None:
    events = chain(["a", "b", "c"], streams=1)
    watch = follower()
    for offset, event in enumerate(events):
        watch.take(record(event), 0, offset)
    forged = {**events[1], "payload": {"text": "forged", "unit": "ncsw"}}
    forged["hash"] = hash_event_fields(forged)
    found = watch.take(record(forged), 0, 3)
    assert found is not None
    assert (found.chain_break.position, found.chain_break.kind) == (2, BreakKind.DISAGREE)


def test_a_record_that_is_not_an_event_is_a_break() -> None:
    found = follower().take(b"{not json", 0, 7)
    assert found is not None
    assert "offset 7" in found.chain_break.detail


def test_resumed_from_the_state_file_it_continues_the_chain(tmp_path: Path) -> None:
    events = chain([f"n{i}" for i in range(8)], streams=3)
    state = WatchState(tmp_path / "watch.sqlite3")
    first = follower(state.load("notes", "t"))
    for offset, event in enumerate(events[:5]):
        first.take(record(event), 0, offset)
    streams, hashes, keep_after = first.saved_changes()
    state.save(first.to_save(), streams, hashes, keep_after)
    state.close()

    state = WatchState(tmp_path / "watch.sqlite3")
    again = follower(state.load("notes", "t"))
    assert again.head == (5, events[4]["hash"])
    assert again.take(record(events[4]), 0, 4) is None  # read again: a known copy
    for offset, event in enumerate(events[5:], start=5):
        assert again.take(record(event), 0, offset) is None
    assert again.events_verified == 3
    # A stream version skipped after the resume is still caught: versions were kept.
    gap = {**events[7], "position": 9, "prev_hash": events[7]["hash"], "stream_version": 9}
    gap["hash"] = hash_event_fields(gap)
    found = again.take(record(gap), 0, 8)
    assert found is not None
    assert found.chain_break.kind is BreakKind.STREAM_GAP
