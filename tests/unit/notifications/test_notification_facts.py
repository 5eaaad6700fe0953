"""Which events' notices read what the projection knew before them (``NOTICES_READ_FACTS``).

The handler reads those facts from the database only for the events in the set, so an event
outside it must be told from the event alone, and one inside it must need them.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipmg_notifications.domain import (
    NOTICES_READ_FACTS,
    Facts,
    MissingFacts,
    notices_for,
)
from ipmg_shared.events import DomainEvent
from tests.unit.meetings.test_meeting_events import EVENTS as MEETING_EVENTS
from tests.unit.notifications.examples import MEETING_FACTS, RESOLUTION_FACTS
from tests.unit.resolutions.test_resolution_events import EVENTS as RESOLUTION_EVENTS

EVERY_EVENT = {**MEETING_EVENTS, **RESOLUTION_EVENTS}
KNOWN = Facts(meeting=MEETING_FACTS, resolution=RESOLUTION_FACTS)


def test_the_set_names_events_this_service_reads() -> None:
    assert NOTICES_READ_FACTS.issubset(EVERY_EVENT)


@pytest.mark.parametrize(
    "event_class",
    [cls for cls in EVERY_EVENT if cls not in NOTICES_READ_FACTS],
    ids=lambda cls: cls.event_type,
)
@settings(max_examples=25)
@given(data=st.data())
def test_an_event_outside_the_set_is_told_without_facts(
    event_class: type[DomainEvent], data: st.DataObject
) -> None:
    event = data.draw(EVERY_EVENT[event_class])

    assert notices_for(event, Facts()) == notices_for(event, KNOWN)


@pytest.mark.parametrize(
    "event_class",
    [cls for cls in EVERY_EVENT if cls in NOTICES_READ_FACTS],
    ids=lambda cls: cls.event_type,
)
@settings(max_examples=5)
@given(data=st.data())
def test_an_event_in_the_set_needs_its_facts(
    event_class: type[DomainEvent], data: st.DataObject
) -> None:
    event = data.draw(EVERY_EVENT[event_class])

    with pytest.raises(MissingFacts):
        notices_for(event, Facts())
