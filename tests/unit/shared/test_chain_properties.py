"""Property tests of the hash chain: any single change, deletion or reordering of stored
events is caught at the right position; upcasting round-trips."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ipmg_shared.canonical import GENESIS_HASH
from ipmg_shared.chain import BreakKind, ChainVerifier
from ipmg_shared.envelope import hash_event_fields
from tests.support.sample_events import REGISTRY, NoteRecorded


def chain(texts: list[str], streams: int) -> list[dict[str, Any]]:
    """A valid chain of NoteRecorded events spread over ``streams`` streams."""
    events: list[dict[str, Any]] = []
    versions: dict[str, int] = {}
    previous = GENESIS_HASH
    for position, text in enumerate(texts, start=1):
        stream = f"note-{position % streams}"
        versions[stream] = versions.get(stream, 0) + 1
        event: dict[str, Any] = {
            "event_id": f"00000000-0000-4000-8000-{position:012d}",
            "type": "NoteRecorded",
            "schema_version": 2,
            "source": "notes",
            "stream_id": stream,
            "stream_version": versions[stream],
            "position": position,
            "occurred_at": "2015-11-26T10:00:00.000000Z",
            "recorded_at": f"2015-11-26T10:{position // 60 % 60:02d}:{position % 60:02d}.000000Z",
            "actor": {"subject": "staff@ncsw.example.org", "unit": "ncsw", "role": "secretariat"},
            "correlation_id": "0c5d8a9e-1f2b-4c3d-9e8f-7a6b5c4d3e2f",
            "causation_id": None,
            "payload": {"text": text, "unit": "ncsw"},
            "prev_hash": previous,
        }
        previous = event["hash"] = hash_event_fields(event)
        events.append(event)
    return events


histories = st.tuples(
    st.lists(st.text(max_size=20), min_size=3, max_size=40), st.integers(1, 5)
).map(lambda drawn: chain(*drawn))


@given(histories)
def test_an_untouched_chain_verifies(events: list[dict[str, Any]]) -> None:
    report = ChainVerifier("notes").feed_all(events)
    assert report.ok
    assert report.events == len(events)
    assert report.head_hash == events[-1]["hash"]


@settings(max_examples=200)
@given(histories, st.data())
def test_a_changed_payload_is_caught_where_it_is(
    events: list[dict[str, Any]], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(events) - 1))
    new_text = data.draw(
        st.text(max_size=20).filter(lambda t: t != events[index]["payload"]["text"])
    )
    events[index] = {**events[index], "payload": {"text": new_text, "unit": "ncsw"}}
    report = ChainVerifier("notes").feed_all(events)
    assert report.first_break is not None
    assert report.first_break.position == index + 1
    assert report.first_break.kind is BreakKind.CHANGED


@settings(max_examples=200)
@given(histories, st.data())
def test_a_deleted_event_is_caught_where_it_was(
    events: list[dict[str, Any]], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(events) - 2))  # deleting the last leaves a valid chain
    del events[index]
    report = ChainVerifier("notes").feed_all(events)
    assert report.first_break is not None
    assert report.first_break.position == index + 1
    assert report.first_break.kind is BreakKind.MISSING


@settings(max_examples=200)
@given(histories, st.data())
def test_two_events_swapped_are_caught_at_the_first(
    events: list[dict[str, Any]], data: st.DataObject
) -> None:
    first = data.draw(st.integers(0, len(events) - 2))
    second = data.draw(st.integers(first + 1, min(first + 20, len(events) - 1)))
    # Swapped in place: each keeps its content but takes the other's position.
    a, b = events[first], events[second]
    events[first] = {**b, "position": a["position"]}
    events[second] = {**a, "position": b["position"]}
    report = ChainVerifier("notes").feed_all(events)
    assert report.first_break is not None
    assert report.first_break.position == first + 1
    assert report.first_break.kind is BreakKind.REORDERED


@given(st.text(max_size=50))
def test_upcasting_round_trips(text: str) -> None:
    old = {"text": text}  # schema version 1 had no unit
    upcast = REGISTRY.decode("NoteRecorded", 1, old)
    assert upcast == NoteRecorded(text=text)
    assert REGISTRY.decode("NoteRecorded", 2, upcast.model_dump(mode="json")) == upcast
