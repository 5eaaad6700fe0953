"""Every kind of message renders as plain text and as escaped HTML."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
from jinja2 import DictLoader, UndefinedError

from ipmg_contracts.meetings import MeetingCancelled, MeetingRescheduled
from ipmg_contracts.notifications import NotificationKind
from ipmg_contracts.resolutions import ProgressStatus
from ipmg_notifications import rendering
from ipmg_notifications.domain import (
    UNIT_NAMES,
    ActionDeadline,
    Facts,
    FeedbackDeadline,
    MeetingFacts,
    Notice,
    QuarterFigures,
    ReminderPolicy,
    digest_due,
    notices_for,
    reminder_notice,
    reminders_due,
)
from ipmg_notifications.rendering import (
    environment,
    messages_for,
    messages_of,
    render,
    template_names,
)
from ipmg_shared.actors import Unit
from tests.unit.notifications.examples import (
    ADOPTED,
    CIRCULATED,
    DUE,
    MEETING,
    MEETING_FACTS,
    RESOLUTION_FACTS,
    SCHEDULED,
    SIGNED,
)

KNOWN = Facts(meeting=MEETING_FACTS, resolution=RESOLUTION_FACTS)
POLICY = ReminderPolicy(lead_days=3, stale_after_days=7)


def one_notice_of_each_kind() -> dict[NotificationKind, Notice]:
    events = [
        SCHEDULED,
        MeetingRescheduled(
            meeting_id=MEETING,
            scheduled_for=date(2015, 11, 26),
            host_unit=Unit.AJK,
            venue="Chattar Palace",
            reason="The hall was taken",
        ),
        MeetingCancelled(meeting_id=MEETING, reason="Floods"),
        CIRCULATED,
        SIGNED,
        ADOPTED,
    ]
    notices = {notices_for(event, KNOWN)[0].kind: notices_for(event, KNOWN)[0] for event in events}
    today = DUE + timedelta(days=1)
    feedback = [FeedbackDeadline(RESOLUTION_FACTS, Unit.SINDH, DUE, False)]
    actions = [
        ActionDeadline(
            RESOLUTION_FACTS, "PB-1", Unit.PUNJAB, "Notify", DUE, ProgressStatus.BLOCKED, 10
        )
    ]
    for reminder in reminders_due(today, feedback, actions, POLICY):
        notice = reminder_notice(reminder, today)
        notices[notice.kind] = notice
    digest = digest_due(date(2016, 4, 2), POLICY)
    assert digest is not None
    notices[NotificationKind.QUARTERLY_DIGEST] = reminder_notice(
        digest,
        date(2016, 4, 2),
        figures=QuarterFigures(12, 1, 2, 1),
        open_feedback=feedback,
        overdue_actions=actions,
    )
    return notices


NOTICES = one_notice_of_each_kind()


def test_every_kind_has_a_notice_here() -> None:
    assert set(NOTICES) == set(NotificationKind)


@pytest.mark.parametrize("kind", list(NotificationKind))
@pytest.mark.parametrize("person", ["IPMG Focal Person, Punjab", None])
def test_every_kind_renders_text_and_html(kind: NotificationKind, person: str | None) -> None:
    message = render(NOTICES[kind], person)
    assert message.subject == NOTICES[kind].subject
    greeting = f"Dear {person}," if person else "To: "
    assert message.text.startswith(greeting)
    assert "IPMG Secretariat" in message.text
    assert message.html.startswith("<!DOCTYPE html>")
    assert "{{" not in message.text + message.html


def test_what_people_typed_is_escaped_in_html_and_kept_in_text() -> None:
    message = render(NOTICES[NotificationKind.FEEDBACK_REQUEST], "A <b>bold</b> name")
    assert "<with its own budget>" in message.text
    assert "&lt;with its own budget&gt;" in message.html
    assert "A &lt;b&gt;bold&lt;/b&gt; name" in message.html


def test_one_body_is_addressed_to_each_person_with_only_the_greeting_changed() -> None:
    addressed_to = messages_of(NOTICES[NotificationKind.INVITATION])
    ayesha, bilal, unit = (
        addressed_to("Ayesha Khan"),
        addressed_to("Bilal <Ahmed>"),
        addressed_to(None),
    )
    assert ayesha.text.replace("Ayesha Khan", "Bilal <Ahmed>") == bilal.text
    assert ayesha.html.replace("Ayesha Khan", "Bilal &lt;Ahmed&gt;") == bilal.html
    assert unit.text.removeprefix("To: Punjab") == ayesha.text.removeprefix("Dear Ayesha Khan,")


PEOPLE = ["Ayesha Khan", "A <b>bold</b> & 'quoted' \"name\""]


def rendered_whole(notice: Notice, person: str | None) -> tuple[str, str]:
    """The notice's message to ``person`` as its templates render it, in one piece."""
    env = environment()
    variables = {**notice.context, "subject": notice.subject, "unit_name": UNIT_NAMES[notice.unit]}
    text_name, html_name = template_names(notice.kind)
    text_body = env.get_template(text_name).render(variables)
    html_body = env.get_template(html_name).make_module(variables)
    return (
        env.get_template("base.txt").render(variables, person=person, body=text_body),
        env.get_template("base.html").render(variables, person=person, body=html_body),
    )


@pytest.mark.parametrize("kind", list(NotificationKind))
@pytest.mark.parametrize("person", PEOPLE)
def test_a_message_framed_once_reads_as_if_rendered_whole_for_each_person(
    kind: NotificationKind, person: str
) -> None:
    message = render(NOTICES[kind], person)

    assert (message.text, message.html) == rendered_whole(NOTICES[kind], person)


@pytest.mark.parametrize("kind", list(NotificationKind))
def test_a_notice_rendered_once_for_every_unit_reads_as_if_rendered_whole_for_each(
    kind: NotificationKind,
) -> None:
    # Every unit: their names are a closed set, "Azad Jammu & Kashmir" escaped in HTML among them.
    notices = [replace(NOTICES[kind], unit=unit) for unit in Unit]

    for notice, addressed_to in messages_for(notices):
        for person in [*PEOPLE, None]:
            message = addressed_to(person)
            assert message.subject == notice.subject
            assert (message.text, message.html) == rendered_whole(notice, person)


def test_the_notices_of_a_meeting_are_rendered_once_for_all_units(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rendered: list[Notice] = []
    shared_of = rendering._UnitShared.of

    def counted(notice: Notice) -> rendering._UnitShared:
        rendered.append(notice)
        return shared_of(notice)

    monkeypatch.setattr(rendering._UnitShared, "of", counted)
    notices = notices_for(SCHEDULED, KNOWN)

    messages = list(messages_for(notices))

    assert len(messages) == len(Unit) == len(notices)
    assert len(rendered) == 1


def test_each_unit_s_own_actions_are_rendered_for_it_alone() -> None:
    notices = notices_for(ADOPTED, KNOWN)
    assert len(notices) > 1

    for notice, addressed_to in messages_for(notices):
        message = addressed_to(None)
        assert (message.text, message.html) == rendered_whole(notice, None)


def test_a_template_that_changes_the_unit_s_name_is_rendered_whole_for_each_unit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shipped = environment()
    templates = {
        name: shipped.loader.get_source(shipped, name)[0]  # type: ignore[union-attr]
        for name in ("base.txt", "base.html", "_meeting.txt", "_meeting.html", "invitation.html")
    }
    templates["invitation.txt"] = "For {{ unit_name | upper }} only."
    monkeypatch.setattr(
        rendering, "environment", lambda: shipped.overlay(loader=DictLoader(templates))
    )
    notices = notices_for(SCHEDULED, KNOWN)

    texts = [addressed_to(None).text for _, addressed_to in messages_for(notices)]

    assert [
        text.count(f"For {UNIT_NAMES[notice.unit].upper()} only.")
        for notice, text in zip(notices, texts, strict=True)
    ] == [1] * len(Unit)
    assert all("\x00" not in text for text in texts)


def test_each_unit_reads_its_own_actions_in_its_message() -> None:
    message = render(NOTICES[NotificationKind.ACTIONS_ASSIGNED], None)
    assert "PB-1" in message.text
    assert "PB-2" in message.text
    assert "Sindh's own task" not in message.text


def test_a_meeting_message_shows_its_date_host_and_venue() -> None:
    text = render(NOTICES[NotificationKind.MEETING_CHANGED], None).text
    assert "26 November 2015" in text
    assert "20 November 2015" in text  # what it was
    assert "Azad Jammu & Kashmir" in text
    assert "The hall was taken" in text


def test_a_notice_missing_what_its_template_needs_fails_loudly() -> None:
    broken = Notice(NotificationKind.INVITATION, Unit.PUNJAB, "Invitation", {})
    with pytest.raises(UndefinedError):
        render(broken, None)


def test_a_meeting_without_an_occasion_leaves_the_line_out() -> None:
    plain = MeetingFacts(MEETING, date(2015, 11, 20), Unit.SINDH, "Karachi", None)
    moved = MeetingRescheduled(
        meeting_id=MEETING,
        scheduled_for=date(2015, 11, 26),
        host_unit=Unit.SINDH,
        venue="Karachi",
        reason="Travel",
    )
    text = render(notices_for(moved, Facts(plain))[0], None).text
    assert "Venue:    Karachi\n\n" in text
    assert "Occasion" not in text
    assert "Occasion:" in render(NOTICES[NotificationKind.INVITATION], None).text
