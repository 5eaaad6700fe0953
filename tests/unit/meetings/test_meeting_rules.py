"""Given past meeting events, when a command is decided, then these events or this refusal."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from ipmg_meetings.domain import (
    Attendee,
    CancelMeeting,
    HoldMeeting,
    MeetingCancelled,
    MeetingCommand,
    MeetingHeld,
    MeetingRescheduled,
    MeetingScheduled,
    MeetingState,
    MeetingStatus,
    MinutesPublished,
    PublishMinutes,
    RescheduleMeeting,
    ScheduleMeeting,
    decide,
    evolve,
    fold,
)
from ipmg_meetings.rotation import ROTATION_VERSION
from ipmg_shared.actors import Actor, Role, Unit
from ipmg_shared.domain import CommandRefused, NotAuthorised, NotFound
from ipmg_shared.events import DomainEvent

MEETING = UUID("00000000-0000-4000-8000-000000000001")
AT = datetime(2015, 11, 26, 12, 0, tzinfo=UTC)
HELD_ON = date(2015, 11, 26)
SECRETARIAT = Actor(subject="staff:1", unit=Unit.NCSW, role=Role.SECRETARIAT)
ATTENDEES = (
    Attendee(name="Chairperson", role="Chairperson, NCSW", unit=Unit.NCSW),
    Attendee(name="Minister WDD", role="Minister, Women Development", unit=Unit.AJK),
)

SCHEDULED = MeetingScheduled(
    meeting_id=MEETING,
    scheduled_for=HELD_ON,
    host_unit=Unit.AJK,
    venue="Muzaffarabad",
    occasion="16 Days of Activism",
    rotation_version=ROTATION_VERSION,
)
HELD = MeetingHeld(
    meeting_id=MEETING,
    held_on=HELD_ON,
    host_unit=Unit.AJK,
    venue="Muzaffarabad",
    occasion="16 Days of Activism",
    attendees=ATTENDEES,
    agenda=("CEDAW reporting",),
)
CANCELLED = MeetingCancelled(meeting_id=MEETING, reason="Floods")
MINUTES = MinutesPublished(meeting_id=MEETING, minutes="The group agreed five resolutions.")


def schedule(**fields: Any) -> ScheduleMeeting:
    values = {
        "scheduled_for": HELD_ON,
        "host_unit": Unit.AJK,
        "venue": "Muzaffarabad",
        "occasion": "16 Days of Activism",
    }
    return ScheduleMeeting(**_command_fields(values | fields))


def reschedule(**fields: Any) -> RescheduleMeeting:
    values = {
        "scheduled_for": date(2015, 12, 3),
        "host_unit": Unit.AJK,
        "venue": "Muzaffarabad",
        "reason": "Clashes with the budget session",
    }
    return RescheduleMeeting(**_command_fields(values | fields))


def cancel(**fields: Any) -> CancelMeeting:
    return CancelMeeting(**_command_fields({"reason": "Floods"} | fields))


def hold(**fields: Any) -> HoldMeeting:
    values = {
        "held_on": HELD_ON,
        "host_unit": Unit.AJK,
        "venue": "Muzaffarabad",
        "occasion": "16 Days of Activism",
        "attendees": ATTENDEES,
        "agenda": ("CEDAW reporting",),
    }
    return HoldMeeting(**_command_fields(values | fields))


def publish_minutes(**fields: Any) -> PublishMinutes:
    values = {"minutes": "The group agreed five resolutions."}
    return PublishMinutes(**_command_fields(values | fields))


def _command_fields(fields: dict[str, Any]) -> dict[str, Any]:
    return {"actor": SECRETARIAT, "at": AT, "meeting_id": MEETING} | fields


def refusal(command: MeetingCommand, *given: DomainEvent) -> CommandRefused:
    with pytest.raises(CommandRefused) as refused:
        decide(command, fold(given))
    return refused.value


# --- scheduling ---------------------------------------------------------------------------


def test_a_meeting_is_scheduled_on_a_new_stream() -> None:
    assert decide(schedule(), fold([])) == [SCHEDULED]


def test_a_meeting_is_scheduled_only_once() -> None:
    assert refusal(schedule(), SCHEDULED).rule == "meeting.schedule.already_scheduled"


def test_a_scheduled_meeting_is_rescheduled() -> None:
    events = decide(reschedule(host_unit=Unit.SINDH, venue="Karachi"), fold([SCHEDULED]))

    assert events == [
        MeetingRescheduled(
            meeting_id=MEETING,
            scheduled_for=date(2015, 12, 3),
            host_unit=Unit.SINDH,
            venue="Karachi",
            reason="Clashes with the budget session",
        )
    ]
    state = fold([SCHEDULED, *events])
    assert (state.scheduled_for, state.host_unit, state.venue) == (
        date(2015, 12, 3),
        Unit.SINDH,
        "Karachi",
    )
    assert state.status is MeetingStatus.SCHEDULED


def test_rescheduling_to_the_same_plan_is_refused() -> None:
    unchanged = reschedule(scheduled_for=HELD_ON)
    assert refusal(unchanged, SCHEDULED).rule == "meeting.reschedule.no_change"


@pytest.mark.parametrize(
    "history", [(SCHEDULED, HELD), (SCHEDULED, CANCELLED)], ids=["held", "cancelled"]
)
def test_only_a_scheduled_meeting_is_rescheduled(history: tuple[DomainEvent, ...]) -> None:
    assert refusal(reschedule(), *history).rule == "meeting.reschedule.requires_scheduled"


def test_a_scheduled_meeting_is_cancelled() -> None:
    events = decide(cancel(), fold([SCHEDULED]))

    assert events == [CANCELLED]
    assert fold([SCHEDULED, *events]).status is MeetingStatus.CANCELLED


@pytest.mark.parametrize(
    "history", [(SCHEDULED, HELD), (SCHEDULED, CANCELLED)], ids=["held", "cancelled"]
)
def test_only_a_scheduled_meeting_is_cancelled(history: tuple[DomainEvent, ...]) -> None:
    assert refusal(cancel(), *history).rule == "meeting.cancel.requires_scheduled"


# --- holding ------------------------------------------------------------------------------


def test_a_scheduled_meeting_is_held() -> None:
    events = decide(hold(), fold([SCHEDULED]))

    assert events == [HELD]
    state = fold([SCHEDULED, *events])
    assert state.status is MeetingStatus.HELD
    assert state.held_on == HELD_ON
    assert state.attendees == ATTENDEES


def test_a_rescheduled_meeting_is_held() -> None:
    rescheduled = decide(reschedule(), fold([SCHEDULED]))
    assert decide(hold(), fold([SCHEDULED, *rescheduled])) == [HELD]


@pytest.mark.parametrize("host", list(Unit))
def test_every_member_unit_may_host(host: Unit) -> None:
    [held] = decide(hold(host_unit=host), fold([SCHEDULED]))
    assert isinstance(held, MeetingHeld)
    assert held.host_unit is host


def test_a_host_that_is_not_a_member_unit_is_rejected() -> None:
    with pytest.raises(ValidationError):
        hold(host_unit="islamabad")


def test_a_meeting_is_held_at_most_once() -> None:
    assert refusal(hold(), SCHEDULED, HELD).rule == "meeting.hold.already_held"


def test_a_cancelled_meeting_cannot_be_held() -> None:
    assert refusal(hold(), SCHEDULED, CANCELLED).rule == "meeting.hold.cancelled"


def test_a_meeting_never_scheduled_cannot_be_held() -> None:
    refused = refusal(hold())
    assert isinstance(refused, NotFound)
    assert refused.rule == "meeting.not_found"


@pytest.mark.parametrize(
    "command",
    [reschedule(), cancel(), hold(), publish_minutes()],
    ids=["reschedule", "cancel", "hold", "minutes"],
)
def test_commands_on_a_meeting_never_scheduled_are_not_found(command: MeetingCommand) -> None:
    refused = refusal(command)
    assert isinstance(refused, NotFound)
    assert refused.rule == "meeting.not_found"


def test_a_meeting_cannot_be_recorded_as_held_in_the_future() -> None:
    refused = refusal(hold(held_on=date(2015, 11, 28)), SCHEDULED)
    assert refused.rule == "meeting.hold.in_future"


def test_a_meeting_is_recorded_on_its_local_day_before_utc_reaches_it() -> None:
    # 26 November, 02:00 in Pakistan (UTC+5) is still 25 November in UTC.
    late_evening_utc = datetime(2015, 11, 25, 21, 0, tzinfo=UTC)
    assert decide(hold(at=late_evening_utc), fold([SCHEDULED])) == [HELD]


def test_held_on_is_a_calendar_date_not_an_instant() -> None:
    with pytest.raises(ValidationError):
        hold(held_on="2015-11-26T10:30:00+05:00")


def test_the_clock_on_a_command_is_timezone_aware() -> None:
    with pytest.raises(ValidationError):
        hold(at=datetime(2015, 11, 26, 12, 0))  # naive: no tzinfo


def test_a_held_meeting_has_attendees() -> None:
    with pytest.raises(ValidationError):
        hold(attendees=())


@pytest.mark.parametrize("missing", ["name", "role", "unit"])
def test_an_attendee_has_a_name_a_role_and_a_unit(missing: str) -> None:
    attendee = {"name": "Secretary WDD", "role": "Secretary", "unit": "punjab"}
    del attendee[missing]
    with pytest.raises(ValidationError):
        hold(attendees=(attendee,))


# --- minutes ------------------------------------------------------------------------------


def test_minutes_are_published_for_a_held_meeting() -> None:
    events = decide(publish_minutes(), fold([SCHEDULED, HELD]))

    assert events == [MINUTES]
    assert fold([SCHEDULED, HELD, *events]).minutes == MINUTES.minutes


@pytest.mark.parametrize(
    "history", [(SCHEDULED,), (SCHEDULED, CANCELLED)], ids=["scheduled", "cancelled"]
)
def test_minutes_only_after_the_meeting_was_held(history: tuple[DomainEvent, ...]) -> None:
    assert refusal(publish_minutes(), *history).rule == "meeting.minutes.requires_held"


def test_minutes_are_published_once() -> None:
    refused = refusal(publish_minutes(), SCHEDULED, HELD, MINUTES)
    assert refused.rule == "meeting.minutes.already_published"


# --- authorisation ------------------------------------------------------------------------

NOT_SECRETARIAT = [
    Actor(subject="focal:ajk", unit=Unit.AJK, role=Role.FOCAL_PERSON),
    Actor(subject="focal:ncsw", unit=Unit.NCSW, role=Role.FOCAL_PERSON),
    Actor(subject="auditor:1", unit=Unit.NCSW, role=Role.AUDITOR),
    Actor.service("reminders"),
    Actor(subject="staff:punjab", unit=Unit.PUNJAB, role=Role.SECRETARIAT),
]
COMMANDS_AND_HISTORIES: list[tuple[MeetingCommand, tuple[DomainEvent, ...]]] = [
    (schedule(), ()),
    (reschedule(), (SCHEDULED,)),
    (cancel(), (SCHEDULED,)),
    (hold(), (SCHEDULED,)),
    (publish_minutes(), (SCHEDULED, HELD)),
]


@pytest.mark.parametrize("actor", NOT_SECRETARIAT, ids=lambda actor: actor.subject)
@pytest.mark.parametrize(
    ("command", "history"),
    COMMANDS_AND_HISTORIES,
    ids=["schedule", "reschedule", "cancel", "hold", "minutes"],
)
def test_only_the_ncsw_secretariat_runs_meeting_commands(
    actor: Actor, command: MeetingCommand, history: tuple[DomainEvent, ...]
) -> None:
    # The same command from the secretariat is accepted, so the actor alone is refused.
    assert decide(command, fold(history))
    refused = refusal(command.model_copy(update={"actor": actor}), *history)
    assert isinstance(refused, NotAuthorised)
    assert refused.rule == "meeting.auth.secretariat_only"


# --- folding ------------------------------------------------------------------------------


def test_the_version_counts_the_events_folded() -> None:
    assert MeetingState.initial().version == 0
    assert fold([SCHEDULED, HELD, MINUTES]).version == 3


def test_evolve_rejects_events_of_other_aggregates() -> None:
    class SomethingElseHappened(DomainEvent):
        event_type = "SomethingElseHappened"

    with pytest.raises(TypeError):
        evolve(MeetingState.initial(), SomethingElseHappened())


def test_a_meeting_is_scheduled_at_most_five_years_ahead() -> None:
    assert decide(schedule(scheduled_for=date(2020, 11, 26)), fold([]))
    refused = refusal(schedule(scheduled_for=date(2020, 11, 28)))
    assert refused.rule == "date.too_far_ahead"
    assert refused.status == 422
    assert refusal(reschedule(scheduled_for=date(2021, 1, 1)), SCHEDULED).rule == (
        "date.too_far_ahead"
    )


@pytest.mark.parametrize("scheduled_for", [1448496000, "2015-11-26T00:00:00", "2009-03-31"])
def test_a_meeting_date_is_a_plausible_calendar_date(scheduled_for: object) -> None:
    with pytest.raises(ValidationError):
        schedule(scheduled_for=scheduled_for)
