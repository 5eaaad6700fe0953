"""Fixed vectors of the canonical encoding and the event hash: they must never change."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipmg_shared.canonical import (
    GENESIS_HASH,
    NotCanonical,
    canonical_bytes,
    format_instant,
    parse_instant,
)
from ipmg_shared.envelope import hash_event_fields

VECTOR_EVENT = {
    "event_id": "6f1b7c1e-2d3a-4b5c-8d9e-0f1a2b3c4d5e",
    "type": "MeetingHeld",
    "schema_version": 1,
    "source": "meetings",
    "stream_id": "meeting-0b0e5a52-9d1e-4a53-a7d4-3b1d1f7e2c10",
    "stream_version": 2,
    "position": 7,
    "occurred_at": "2015-11-26T10:00:00.000000Z",
    "recorded_at": "2015-11-26T18:30:05.123456Z",
    "actor": {"subject": "secretariat@ncsw.gov.pk", "unit": "ncsw", "role": "secretariat"},
    "correlation_id": "0c5d8a9e-1f2b-4c3d-9e8f-7a6b5c4d3e2f",
    "causation_id": None,
    "payload": {"host_unit": "ajk", "occasion": "16 Days of Activism", "venue": "Muzaffarābād"},
    "prev_hash": GENESIS_HASH,
}


def test_keys_are_sorted_without_whitespace_and_unicode_is_kept() -> None:
    assert (
        canonical_bytes({"b": 1, "a": ["é", None, True]}) == '{"a":["é",null,true],"b":1}'.encode()
    )


def test_floats_are_refused() -> None:
    with pytest.raises(NotCanonical):
        canonical_bytes({"percent": 12.5})


def test_instants_are_utc_with_microseconds() -> None:
    karachi = timezone(timedelta(hours=5))
    assert format_instant(datetime(2015, 11, 26, 15, 0, tzinfo=karachi)) == (
        "2015-11-26T10:00:00.000000Z"
    )
    with pytest.raises(NotCanonical):
        format_instant(datetime(2015, 11, 26))


def test_event_hash_vector() -> None:
    # The vector pins the encoding: if this fails, the canonical form changed (it must not).
    assert hash_event_fields(VECTOR_EVENT) == (
        "0c0564223f15dd1ff8269a942c8111be64f011090e5dfc27be0b9f76a6839dcf"
    )


def test_event_hash_is_sha256_of_the_documented_text() -> None:
    text = (
        '{"actor":{"role":"secretariat","subject":"secretariat@ncsw.gov.pk","unit":"ncsw"},'
        '"causation_id":null,"correlation_id":"0c5d8a9e-1f2b-4c3d-9e8f-7a6b5c4d3e2f",'
        '"event_id":"6f1b7c1e-2d3a-4b5c-8d9e-0f1a2b3c4d5e",'
        '"occurred_at":"2015-11-26T10:00:00.000000Z",'
        '"payload":{"host_unit":"ajk","occasion":"16 Days of Activism","venue":"Muzaffarābād"},'
        '"position":7,"prev_hash":"' + GENESIS_HASH + '",'
        '"recorded_at":"2015-11-26T18:30:05.123456Z","schema_version":1,"source":"meetings",'
        '"stream_id":"meeting-0b0e5a52-9d1e-4a53-a7d4-3b1d1f7e2c10","stream_version":2,'
        '"type":"MeetingHeld"}'
    )
    assert canonical_bytes(VECTOR_EVENT) == text.encode()
    assert hashlib.sha256(text.encode()).hexdigest() == hash_event_fields(VECTOR_EVENT)


def test_hash_ignores_only_the_hash_field() -> None:
    with_hash = {**VECTOR_EVENT, "hash": "f" * 64}
    assert hash_event_fields(with_hash) == hash_event_fields(VECTOR_EVENT)
    payload = {"host_unit": "ajk", "occasion": "16 Days of Activism", "venue": "Muzaffarabad"}
    changed = {**VECTOR_EVENT, "payload": payload}
    assert hash_event_fields(changed) != hash_event_fields(VECTOR_EVENT)


@given(st.datetimes(timezones=st.just(UTC)))
def test_instants_round_trip(instant: datetime) -> None:
    assert parse_instant(format_instant(instant)) == instant
