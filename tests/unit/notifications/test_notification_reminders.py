"""Which reminders, follow-ups and digests are due on a given day (a fixed clock)."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from ipmg_contracts.notifications import NotificationKind, ReminderKind
from ipmg_contracts.resolutions import ProgressStatus
from ipmg_notifications.domain import (
    ActionDeadline,
    FeedbackDeadline,
    QuarterFigures,
    ReminderDue,
    ReminderPolicy,
    digest_due,
    quarter_bounds,
    quarter_of,
    quarter_start,
    reminder_day,
    reminder_notice,
    reminders_due,
)
from ipmg_shared.actors import Unit
from tests.unit.notifications.examples import DUE, RESOLUTION, RESOLUTION_FACTS

POLICY = ReminderPolicy(lead_days=3, stale_after_days=7)
MID_QUARTER = date(2016, 2, 15)  # no digest is due around here


def feedback(unit: Unit, *, answered: bool = False, due: date = DUE) -> FeedbackDeadline:
    return FeedbackDeadline(RESOLUTION_FACTS, unit, due, answered)


def action(
    action_id: str, status: ProgressStatus, *, due: date = date(2016, 2, 1), unit: Unit = Unit.SINDH
) -> ActionDeadline:
    return ActionDeadline(RESOLUTION_FACTS, action_id, unit, "Notify the WDD", due, status, 0)


def due_on(today: date, *deadlines: FeedbackDeadline | ActionDeadline) -> list[ReminderDue]:
    return reminders_due(
        today,
        [d for d in deadlines if isinstance(d, FeedbackDeadline)],
        [d for d in deadlines if isinstance(d, ActionDeadline)],
        POLICY,
    )


def test_feedback_reminders_start_lead_days_before_the_due_date() -> None:
    silent = feedback(Unit.SINDH)
    assert due_on(DUE - timedelta(days=4), silent) == []
    (reminder,) = due_on(DUE - timedelta(days=3), silent)
    assert reminder.key == ("feedback_due", str(RESOLUTION), "sindh", DUE)
    assert reminder.stream_id == f"reminder-feedback_due-{RESOLUTION}-sindh-{DUE}"
    assert reminder.resolution_id == RESOLUTION


def test_past_the_due_date_each_silent_unit_is_reminded_and_answered_ones_are_not() -> None:
    today = DUE + timedelta(days=1)
    deadlines = [
        feedback(Unit.PUNJAB, answered=True),
        feedback(Unit.SINDH),
        feedback(Unit.KHYBER_PAKHTUNKHWA),
    ]
    reminded = due_on(today, *deadlines)
    assert [r.unit for r in reminded] == [Unit.KHYBER_PAKHTUNKHWA, Unit.SINDH]
    notice = reminder_notice(reminded[1], today)
    assert notice.kind is NotificationKind.FEEDBACK_REMINDER
    assert notice.subject.startswith("Reminder: feedback was due 15 January 2016")
    assert notice.context["overdue"] is True


def test_a_reminder_whose_day_passed_long_ago_is_not_sent_late() -> None:
    first_day = reminder_day(ReminderKind.FEEDBACK_DUE, DUE, POLICY)
    assert due_on(first_day + timedelta(days=6), feedback(Unit.SINDH))
    assert due_on(first_day + timedelta(days=7), feedback(Unit.SINDH)) == []


def test_overdue_actions_without_progress_are_followed_up() -> None:
    due = date(2016, 2, 1)
    deadlines = [
        action("A-1", ProgressStatus.NOT_STARTED),
        action("A-2", ProgressStatus.BLOCKED),
        action("A-3", ProgressStatus.IN_PROGRESS),
        action("A-4", ProgressStatus.COMPLETED),
    ]
    assert due_on(due, *deadlines) == []  # due today is not yet overdue
    followed = due_on(due + timedelta(days=1), *deadlines)
    assert [r.action_id for r in followed] == ["A-1", "A-2"]
    assert followed[0].entity == f"{RESOLUTION}/A-1"
    notice = reminder_notice(followed[0], due + timedelta(days=1))
    assert notice.kind is NotificationKind.ACTION_FOLLOW_UP
    assert notice.unit is Unit.SINDH
    assert notice.context["action"]["status"] == "not started"


def test_the_digest_of_a_quarter_is_due_early_in_the_next_one_to_ncsw() -> None:
    assert digest_due(MID_QUARTER, POLICY) is None
    digest = digest_due(date(2016, 4, 3), POLICY)
    assert digest is not None
    assert digest.key == ("quarterly_digest", "2016-Q1", "ncsw", date(2016, 4, 1))
    assert digest_due(date(2016, 4, 8), POLICY) is None  # a week late is too late
    notice = reminder_notice(
        digest,
        date(2016, 4, 3),
        figures=QuarterFigures(sent=40, failed=2, reminders=3, follow_ups=1),
        open_feedback=[feedback(Unit.SINDH), feedback(Unit.PUNJAB, answered=True)],
        overdue_actions=[action("A-1", ProgressStatus.NOT_STARTED)],
    )
    assert notice.unit is Unit.NCSW
    assert notice.subject == "IPMG quarterly digest, 2016-Q1"
    assert notice.context["figures"]["sent"] == 40
    assert [item["unit"] for item in notice.context["open_feedback"]] == ["Sindh"]
    assert [item["action_id"] for item in notice.context["overdue_actions"]] == ["A-1"]


def test_the_first_digest_of_a_year_covers_the_last_quarter_of_the_one_before() -> None:
    digest = digest_due(date(2017, 1, 2), POLICY)
    assert digest is not None
    assert digest.quarter == "2016-Q4"


# --- properties ---------------------------------------------------------------------------

days = st.dates(min_value=date(2015, 1, 1), max_value=date(2030, 12, 31))
feedback_deadlines = st.lists(
    st.builds(
        FeedbackDeadline,
        resolution=st.just(RESOLUTION_FACTS),
        unit=st.sampled_from(Unit),
        due_on=st.dates(min_value=date(2016, 1, 1), max_value=date(2016, 3, 31)),
        answered=st.booleans(),
    ),
    max_size=12,
)
action_deadlines = st.lists(
    st.builds(
        ActionDeadline,
        resolution=st.just(RESOLUTION_FACTS),
        action_id=st.sampled_from(["A-1", "A-2", "B-1"]),
        unit=st.sampled_from(Unit),
        description=st.just("Do it"),
        due_on=st.dates(min_value=date(2016, 1, 1), max_value=date(2016, 3, 31)),
        status=st.sampled_from(ProgressStatus),
        percent=st.just(0),
    ),
    max_size=12,
)
policies = st.builds(
    ReminderPolicy,
    lead_days=st.integers(min_value=0, max_value=10),
    stale_after_days=st.integers(min_value=1, max_value=30),
)


@given(today=days, feedback=feedback_deadlines, actions=action_deadlines, policy=policies)
def test_reminders_due_on_a_day_are_distinct_open_and_in_their_window(
    today: date,
    feedback: list[FeedbackDeadline],
    actions: list[ActionDeadline],
    policy: ReminderPolicy,
) -> None:
    due = reminders_due(today, feedback, actions, policy)
    assert len({r.key for r in due}) == len(due)
    assert len({r.stream_id for r in due}) == len(due)
    for reminder in due:
        first = reminder_day(reminder.kind, reminder.due_on, policy)
        assert first <= today
        assert (today - first).days < policy.stale_after_days
        if reminder.kind is ReminderKind.FEEDBACK_DUE:
            assert isinstance(reminder.about, FeedbackDeadline)
            assert not reminder.about.answered
        if reminder.kind is ReminderKind.ACTION_OVERDUE:
            assert isinstance(reminder.about, ActionDeadline)
            assert reminder.about.status in (ProgressStatus.NOT_STARTED, ProgressStatus.BLOCKED)


@given(
    start=st.dates(min_value=date(2015, 12, 1), max_value=date(2016, 4, 30)),
    span=st.integers(min_value=1, max_value=60),
    feedback=feedback_deadlines,
    actions=action_deadlines,
    policy=policies,
)
def test_a_scheduler_ticking_every_day_issues_each_key_exactly_once(
    start: date,
    span: int,
    feedback: list[FeedbackDeadline],
    actions: list[ActionDeadline],
    policy: ReminderPolicy,
) -> None:
    issued: list[tuple[str, str, str, date]] = []
    for offset in range(span):
        today = start + timedelta(days=offset)
        for _ in range(2):  # ticking twice a day changes nothing
            due = reminders_due(today, feedback, actions, policy)
            issued += [r.key for r in due if r.key not in issued]
    assert len(set(issued)) == len(issued)
    last = start + timedelta(days=span - 1)
    for deadline in feedback:
        first = reminder_day(ReminderKind.FEEDBACK_DUE, deadline.due_on, policy)
        reachable = first <= last and (start - first).days < policy.stale_after_days
        key = ("feedback_due", str(RESOLUTION), deadline.unit.value, deadline.due_on)
        silent = not any(
            d.answered for d in feedback if (d.unit, d.due_on) == (deadline.unit, deadline.due_on)
        )
        if reachable and silent:
            assert key in issued


@given(day=days)
def test_quarters_contain_their_days(day: date) -> None:
    quarter = quarter_of(day)
    first, after = quarter_bounds(quarter)
    assert first == quarter_start(day) <= day < after
    assert quarter_of(after) != quarter
    assert quarter_of(after - timedelta(days=1)) == quarter


def test_dates_at_the_ends_of_the_calendar_stop_no_other_reminder() -> None:
    # History stored before dates were checked may hold them; the others still go out.
    far = action("a9", ProgressStatus.NOT_STARTED, due=date.max)
    early = feedback(Unit.PUNJAB, due=date.min)
    late = action("a1", ProgressStatus.NOT_STARTED)
    assert [r.action_id for r in due_on(date(2016, 2, 2), far, early, late)] == ["a1"]
