"""Which notices an upstream event calls for, and to whom they are addressed."""

from __future__ import annotations

from datetime import date, timedelta
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipmg_contracts.meetings import (
    Attendee,
    MeetingCancelled,
    MeetingHeld,
    MeetingRescheduled,
)
from ipmg_contracts.notifications import Channel, NotificationKind
from ipmg_contracts.resolutions import (
    FeedbackReceived,
    Position,
    ProgressReported,
    ProgressStatus,
    ResolutionApproved,
)
from ipmg_notifications.directory import DirectoryRole, load_directory
from ipmg_notifications.domain import (
    Facts,
    MissingFacts,
    Notice,
    Recipient,
    delivery_id,
    notices_for,
    recipients,
)
from ipmg_shared.actors import Unit
from ipmg_shared.events import DomainEvent
from tests.unit.notifications.examples import (
    ADOPTED,
    CIRCULATED,
    DUE,
    MEETING,
    MEETING_FACTS,
    RESOLUTION,
    RESOLUTION_FACTS,
    SCHEDULED,
    SIGNED,
    directory_with,
)

KNOWN = Facts(meeting=MEETING_FACTS, resolution=RESOLUTION_FACTS)


def test_a_scheduled_meeting_invites_every_unit() -> None:
    notices = notices_for(SCHEDULED, Facts())
    assert [notice.unit for notice in notices] == list(Unit)
    assert {notice.kind for notice in notices} == {NotificationKind.INVITATION}
    assert notices[0].subject == (
        "Invitation: IPMG meeting on 26 November 2015, hosted by Azad Jammu & Kashmir"
    )


def test_a_rescheduled_meeting_says_what_changed_and_why() -> None:
    event = MeetingRescheduled(
        meeting_id=MEETING,
        scheduled_for=date(2015, 11, 26),
        host_unit=Unit.AJK,
        venue="Chattar Palace",
        reason="The hall was taken",
    )
    notices = notices_for(event, KNOWN)
    assert len(notices) == len(Unit)
    context = notices[0].context
    assert context["meeting"]["date"] == date(2015, 11, 26)
    assert context["previous"]["date"] == MEETING_FACTS.scheduled_for
    assert context["reason"] == "The hall was taken"
    assert notices[0].kind is NotificationKind.MEETING_CHANGED


def test_a_cancelled_meeting_names_the_date_that_is_off() -> None:
    notices = notices_for(MeetingCancelled(meeting_id=MEETING, reason="Floods"), KNOWN)
    assert {n.kind for n in notices} == {NotificationKind.MEETING_CANCELLED}
    assert "20 November 2015" in notices[0].subject


def test_circulation_requests_feedback_from_each_participant() -> None:
    notices = notices_for(CIRCULATED, KNOWN)
    assert [n.unit for n in notices] == list(CIRCULATED.participants)
    assert {n.kind for n in notices} == {NotificationKind.FEEDBACK_REQUEST}
    assert notices[0].context["feedback_due"] == DUE
    assert "15 January 2016" in notices[0].subject


def test_the_signed_text_goes_to_the_responsible_units() -> None:
    notices = notices_for(SIGNED, KNOWN)
    assert [n.unit for n in notices] == list(RESOLUTION_FACTS.responsible_units)
    assert notices[0].context["resolution"]["text"] == RESOLUTION_FACTS.text


def test_each_unit_reads_only_its_own_actions() -> None:
    notices = {n.unit: n for n in notices_for(ADOPTED, KNOWN)}
    assert set(notices) == {Unit.PUNJAB, Unit.SINDH}
    assert [a["action_id"] for a in notices[Unit.PUNJAB].context["actions"]] == ["PB-1", "PB-2"]
    assert [a["action_id"] for a in notices[Unit.SINDH].context["actions"]] == ["SD-1"]


@pytest.mark.parametrize(
    "event",
    [
        MeetingHeld(
            meeting_id=MEETING,
            held_on=date(2015, 11, 26),
            host_unit=Unit.AJK,
            venue="Muzaffarabad",
            occasion=None,
            attendees=(Attendee(name="Chairperson", role="Chairperson", unit=Unit.NCSW),),
            agenda=(),
        ),
        ResolutionApproved(resolution_id=RESOLUTION),
        FeedbackReceived(
            resolution_id=RESOLUTION,
            unit=Unit.PUNJAB,
            person="Focal",
            position=Position.ENDORSE,
            comments=None,
        ),
        ProgressReported(
            resolution_id=RESOLUTION,
            action_id="PB-1",
            unit=Unit.PUNJAB,
            status=ProgressStatus.IN_PROGRESS,
            percent=40,
            narrative="Under way",
            evidence=(),
        ),
    ],
)
def test_events_that_tell_nobody_anything_send_nothing(event: DomainEvent) -> None:
    assert notices_for(event, KNOWN) == []


def test_an_event_about_an_unknown_resolution_is_refused_not_guessed() -> None:
    with pytest.raises(MissingFacts):
        notices_for(SIGNED, Facts())


def test_recipients_come_from_the_directory_by_role_then_the_units_webhook() -> None:
    directory = directory_with()
    request = Notice(NotificationKind.FEEDBACK_REQUEST, Unit.PUNJAB, "s")
    found = recipients(request, directory)
    assert [(r.channel, r.address) for r in found] == [
        (Channel.EMAIL, "focal.punjab@example.org"),
        (Channel.WEBHOOK, "https://hooks.punjab.example.org/ipmg"),
    ]
    invitation = Notice(NotificationKind.INVITATION, Unit.SINDH, "s")
    roles = {person.email: person.role for person in directory.entry(Unit.SINDH).people}
    invited = recipients(invitation, directory)
    assert {roles[r.address] for r in invited} == {DirectoryRole.MEMBER, DirectoryRole.FOCAL_PERSON}
    assert all(r.channel is Channel.EMAIL for r in invited)  # Sindh has no webhook
    digest = Notice(NotificationKind.QUARTERLY_DIGEST, Unit.NCSW, "s")
    assert [r.address for r in recipients(digest, load_directory())] == [
        "ipmg.secretariat@example.org"
    ]


addresses = st.from_regex(r"[a-z]{1,8}\.[a-z]{1,8}@example\.org", fullmatch=True)


@given(cause=st.uuids(), first=addresses, second=addresses, unit=st.sampled_from(Unit))
def test_a_delivery_id_names_one_cause_recipient_and_channel(
    cause: UUID, first: str, second: str, unit: Unit
) -> None:
    one = Recipient(unit, Channel.EMAIL, first, "Someone")
    renamed = Recipient(unit, Channel.EMAIL, first.upper(), "Someone else")
    assert delivery_id(cause, one) == delivery_id(cause, renamed)  # stable across edits
    other = Recipient(unit, Channel.EMAIL, second, None)
    assert (delivery_id(cause, one) == delivery_id(cause, other)) == (first == second)
    webhook = Recipient(unit, Channel.WEBHOOK, first, None)
    assert delivery_id(cause, one) != delivery_id(cause, webhook)


def test_a_notice_is_worth_sending_until_its_day_has_passed() -> None:
    invitation = notices_for(SCHEDULED, Facts())[0]
    assert invitation.relevant_until == SCHEDULED.scheduled_for
    assert not invitation.is_past(SCHEDULED.scheduled_for)
    assert invitation.is_past(SCHEDULED.scheduled_for + timedelta(days=1))
    request = notices_for(CIRCULATED, KNOWN)[0]
    assert request.relevant_until == DUE
    signed = notices_for(SIGNED, KNOWN)[0]
    assert not signed.is_past(SIGNED.signed_on + timedelta(days=90))
    assert signed.is_past(SIGNED.signed_on + timedelta(days=93))
    actions = {n.unit: n for n in notices_for(ADOPTED, KNOWN)}
    assert actions[Unit.PUNJAB].relevant_until == DUE
    reminder = Notice(NotificationKind.FEEDBACK_REMINDER, Unit.SINDH, "s")
    assert not reminder.is_past(date(2999, 1, 1))  # reminders are windowed by the scheduler


@given(title=st.text(min_size=1, max_size=600))
def test_a_subject_is_one_header_line_within_the_contracts_length(title: str) -> None:
    subject = Notice(NotificationKind.SIGNED_TEXT, Unit.PUNJAB, f"Signed: {title}").subject
    assert len(subject) <= 300
    assert "\n" not in subject
    assert "\r" not in subject
    assert subject.startswith("Signed:")
