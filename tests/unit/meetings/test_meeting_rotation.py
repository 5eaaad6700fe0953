"""One ordinary meeting a quarter, hosted in turn by the rotation; exceptions need a reason."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import pytest

from ipmg_meetings.domain import MeetingScheduled, MeetingState, ScheduleMeeting, decide
from ipmg_meetings.rotation import (
    DUPLICATE,
    EXTRAORDINARY_WITHOUT_REASON,
    OUT_OF_TURN,
    ROTATION_ORDER,
    ROTATION_VERSION,
    SECOND_IN_QUARTER,
    CalendarEntry,
    expected_host,
)
from ipmg_shared.actors import Actor, Role, Unit
from ipmg_shared.domain import CommandRefused

NEW = UUID("00000000-0000-4000-8000-000000000002")
AT = datetime(2016, 1, 10, tzinfo=UTC)
SECRETARIAT = Actor(subject="staff:1", unit=Unit.NCSW, role=Role.SECRETARIAT)
Q4_2015 = CalendarEntry(
    meeting_id=UUID("00000000-0000-4000-8000-000000000001"),
    on=date(2015, 11, 26),
    host_unit=Unit.AJK,
    venue="Muzaffarabad",
)


def schedule(**fields: Any) -> ScheduleMeeting:
    values = {
        "actor": SECRETARIAT,
        "at": AT,
        "meeting_id": NEW,
        "scheduled_for": date(2016, 3, 8),
        "host_unit": Unit.PUNJAB,
        "venue": "Lahore",
        "calendar": (Q4_2015,),
    }
    return ScheduleMeeting(**(values | fields))


def rule_refusing(command: ScheduleMeeting) -> str:
    with pytest.raises(CommandRefused) as refused:
        decide(command, MeetingState.initial())
    return refused.value.rule


def test_the_next_unit_in_the_rotation_hosts_the_next_quarter() -> None:
    (event,) = decide(schedule(), MeetingState.initial())

    assert isinstance(event, MeetingScheduled)
    assert (event.expected_host, event.rotation_version) == (Unit.PUNJAB, ROTATION_VERSION)
    assert (event.extraordinary, event.reason) == (False, None)


def test_the_rotation_wraps_around_to_its_first_unit() -> None:
    last = Q4_2015.model_copy(update={"host_unit": ROTATION_ORDER[-1]})

    assert expected_host((last,), date(2016, 3, 8)) is ROTATION_ORDER[0]


def test_the_first_meeting_may_be_hosted_by_anyone() -> None:
    (event,) = decide(schedule(calendar=(), host_unit=Unit.SINDH), MeetingState.initial())

    assert isinstance(event, MeetingScheduled)
    assert event.expected_host is None


def test_an_out_of_turn_host_is_refused() -> None:
    assert rule_refusing(schedule(host_unit=Unit.SINDH, venue="Karachi")) == OUT_OF_TURN


def test_a_second_ordinary_meeting_in_a_quarter_is_refused() -> None:
    second = schedule(scheduled_for=date(2015, 12, 10))

    assert rule_refusing(second) == SECOND_IN_QUARTER


def test_a_cancelled_meeting_leaves_its_quarter_free() -> None:
    # The calendar leaves cancelled meetings out: an empty quarter takes an ordinary meeting.
    (event,) = decide(schedule(calendar=()), MeetingState.initial())

    assert isinstance(event, MeetingScheduled)


def test_an_extraordinary_meeting_with_a_reason_is_recorded_as_such() -> None:
    command = schedule(
        scheduled_for=date(2015, 12, 10),
        host_unit=Unit.SINDH,
        venue="Karachi",
        extraordinary=True,
        reason="Flood relief for women-headed households",
    )

    (event,) = decide(command, MeetingState.initial())

    assert isinstance(event, MeetingScheduled)
    assert event.extraordinary is True
    assert event.reason == "Flood relief for women-headed households"
    assert event.expected_host is Unit.PUNJAB


def test_an_extraordinary_meeting_without_a_reason_is_refused() -> None:
    command = schedule(scheduled_for=date(2015, 12, 10), extraordinary=True)

    assert rule_refusing(command) == EXTRAORDINARY_WITHOUT_REASON


def test_an_exact_duplicate_is_refused_even_as_extraordinary() -> None:
    duplicate = schedule(
        scheduled_for=Q4_2015.on,
        host_unit=Q4_2015.host_unit,
        venue=Q4_2015.venue,
        extraordinary=True,
        reason="Entered twice",
    )

    assert rule_refusing(duplicate) == DUPLICATE


def test_an_extraordinary_meeting_does_not_move_the_rotation() -> None:
    extraordinary = CalendarEntry(
        meeting_id=UUID("00000000-0000-4000-8000-000000000003"),
        on=date(2015, 12, 10),
        host_unit=Unit.SINDH,
        venue="Karachi",
        extraordinary=True,
    )

    assert expected_host((Q4_2015, extraordinary), date(2016, 3, 8)) is Unit.PUNJAB
