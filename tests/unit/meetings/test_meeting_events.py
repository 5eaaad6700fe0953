"""Every meeting event survives the trip through JSON and the registry unchanged."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipmg_meetings.domain import (
    REGISTRY,
    Attendee,
    MeetingCancelled,
    MeetingHeld,
    MeetingRescheduled,
    MeetingScheduled,
    MinutesPublished,
)
from ipmg_shared.actors import Unit
from ipmg_shared.events import DomainEvent


def texts(max_size: int) -> st.SearchStrategy[str]:
    # The models strip surrounding whitespace, so generate values that are already stripped.
    return st.text(max_size=max_size).map(str.strip).filter(bool)


ids = st.uuids(version=4)
units = st.sampled_from(Unit)
attendees = st.builds(Attendee, name=texts(40), role=texts(40), unit=units)

EVENTS: dict[type[DomainEvent], st.SearchStrategy[DomainEvent]] = {
    MeetingScheduled: st.builds(
        MeetingScheduled,
        meeting_id=ids,
        scheduled_for=st.dates(),
        host_unit=units,
        venue=texts(60),
        occasion=st.none() | texts(60),
    ),
    MeetingRescheduled: st.builds(
        MeetingRescheduled,
        meeting_id=ids,
        scheduled_for=st.dates(),
        host_unit=units,
        venue=texts(60),
        reason=texts(200),
    ),
    MeetingCancelled: st.builds(MeetingCancelled, meeting_id=ids, reason=texts(200)),
    MeetingHeld: st.builds(
        MeetingHeld,
        meeting_id=ids,
        held_on=st.dates(),
        host_unit=units,
        venue=texts(60),
        occasion=st.none() | texts(60),
        attendees=st.lists(attendees, min_size=1, max_size=5).map(tuple),
        agenda=st.lists(texts(60), max_size=5).map(tuple),
    ),
    MinutesPublished: st.builds(MinutesPublished, meeting_id=ids, minutes=texts(500)),
}


def test_every_registered_event_has_a_strategy() -> None:
    assert set(EVENTS) == set(REGISTRY.event_types.values())


@pytest.mark.parametrize("event_class", list(EVENTS), ids=lambda cls: cls.event_type)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_events_round_trip_through_the_registry(
    event_class: type[DomainEvent], data: st.DataObject
) -> None:
    event = data.draw(EVENTS[event_class])
    payload = event.model_dump(mode="json")

    decoded = REGISTRY.decode(event_class.event_type, event_class.schema_version, payload)

    assert decoded == event
    assert type(decoded) is event_class


def test_stored_events_outside_the_input_window_stay_readable() -> None:
    # Commands are checked for plausible dates; history written before that is not refused.
    payload = {
        "meeting_id": "7d8f3a52-1f0e-4c1e-9a57-3c8d4b1f2a10",
        "scheduled_for": "9999-12-31",
        "host_unit": "ajk",
        "venue": "Muzaffarabad",
        "occasion": None,
    }
    event = REGISTRY.decode("MeetingScheduled", 1, payload)
    assert event.model_dump(mode="json")["scheduled_for"] == "9999-12-31"
