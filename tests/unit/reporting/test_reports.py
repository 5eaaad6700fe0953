"""Reports computed from documents: tracker, scorecards, meetings, overdue, quarterly."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipmg_contracts import resolutions as r
from ipmg_reporting.charts import PLOT_HEIGHT, scorecard_chart
from ipmg_reporting.projections import Documents, model_from_envelopes
from ipmg_reporting.reports import (
    QUARTER_CSV_COLUMNS,
    meeting_history,
    overdue_actions,
    quarter_bounds,
    quarter_csv_rows,
    quarter_of,
    quarterly_report,
    quarters,
    reference_day,
    scorecards,
    spreadsheet_safe,
    tracker,
)
from tests.unit.reporting.history import (
    MEETING,
    RESOLUTION,
    HistoryWriter,
    LogBuilder,
    envelopes_of,
    lifecycle,
)

FEB_15 = date(2016, 2, 15)
MAR_10 = date(2016, 3, 10)


def documents(log: LogBuilder | None = None, upto: int | None = None) -> Documents:
    envelopes = (log or lifecycle()).envelopes()[:upto]
    return model_from_envelopes(e.to_json() for e in envelopes).documents


def test_quarters_and_reference_days() -> None:
    assert quarter_of(date(2015, 11, 26)) == "2015-Q4"
    assert quarter_of(date(2016, 1, 1)) == "2016-Q1"
    assert quarter_bounds("2016-Q1") == (date(2016, 1, 1), date(2016, 3, 31))
    assert quarter_bounds("2015-Q4") == (date(2015, 10, 1), date(2015, 12, 31))
    with pytest.raises(ValueError, match="not a quarter"):
        quarter_bounds("2016-Q5")
    # Report days are Pakistan's (UTC+5): 20:00 UTC is already the next day there.
    assert reference_day(datetime(2016, 3, 9, 20, 0, tzinfo=UTC)) == MAR_10
    assert quarters(documents()) == ["2015-Q4", "2016-Q1"]


def test_the_tracker_shows_state_meeting_feedback_signatories_and_actions() -> None:
    [row] = tracker(documents(), FEB_15)
    assert (row.number, row.status, row.priority_area) == (
        1,
        "action_plan_adopted",
        "independent_wdds",
    )
    assert (row.meeting_id, row.meeting_date, row.meeting_host) == (
        str(MEETING),
        date(2015, 11, 26),
        "ajk",
    )
    assert [(f.unit, f.position, f.round) for f in row.feedback] == [("sindh", "endorse", 2)]
    assert row.positions == {"endorse": 1}
    assert row.circulation_round == 2
    assert [s.name for s in row.signatories] == ["Chairperson"]
    assert [(a.action_id, a.status, a.percent, a.days_overdue) for a in row.actions] == [
        ("a1", "completed", 100, None),
        ("a2", "not_started", 0, None),
    ]
    assert row.actions[0].narrative == "Bill tabled"


def test_the_tracker_names_who_has_not_answered_the_current_round() -> None:
    [row] = tracker(documents(upto=5), FEB_15)  # circulated, Punjab answered
    assert row.status == "circulated"
    assert row.awaiting_feedback == ("sindh",)
    assert row.feedback_due == date(2015, 12, 10)


def test_the_tracker_filters_by_unit_status_and_priority_area() -> None:
    docs = documents()
    assert len(tracker(docs, FEB_15, unit="punjab")) == 1
    assert tracker(docs, FEB_15, unit="balochistan") == []
    assert tracker(docs, FEB_15, status="closed") == []
    assert len(tracker(docs, FEB_15, priority_area="independent_wdds")) == 1
    assert tracker(docs, FEB_15, priority_area="cedaw") == []


def test_scorecards_count_actions_by_plan_quarter_and_feedback_by_circulation() -> None:
    cards = {(c.quarter, c.unit): c for c in scorecards(documents(), FEB_15)}
    assert set(cards) == {
        ("2015-Q4", "punjab"),
        ("2015-Q4", "sindh"),
        ("2016-Q1", "punjab"),
        ("2016-Q1", "sindh"),
    }
    punjab_feedback = cards[("2015-Q4", "punjab")]
    # Two rounds asked Punjab; it answered the first, two days after circulation.
    assert (punjab_feedback.feedback_requested, punjab_feedback.feedback_given) == (2, 1)
    assert punjab_feedback.feedback_pending == 1
    assert punjab_feedback.feedback_turnaround_days == 2.0
    assert punjab_feedback.actions_assigned == 0
    punjab = cards[("2016-Q1", "punjab")]
    assert (punjab.actions_assigned, punjab.completed, punjab.completed_on_time) == (1, 1, 1)
    assert punjab.on_time_completion_rate == 1.0
    sindh = cards[("2016-Q1", "sindh")]
    assert (sindh.not_started, sindh.overdue, sindh.on_time_completion_rate) == (1, 0, None)

    later = {(c.quarter, c.unit): c for c in scorecards(documents(), MAR_10, "2016-Q1")}
    assert set(later) == {("2016-Q1", "punjab"), ("2016-Q1", "sindh")}
    assert (
        later[("2016-Q1", "sindh")].overdue,
        later[("2016-Q1", "sindh")].on_time_completion_rate,
    ) == (1, 0.0)


def test_overdue_actions_are_open_actions_past_due_of_open_resolutions() -> None:
    assert overdue_actions(documents(), FEB_15) == []
    [late] = overdue_actions(documents(), MAR_10)
    assert (late.unit, late.action_id, late.due_on, late.days_overdue) == (
        "sindh",
        "a2",
        date(2016, 3, 1),
        9,
    )
    assert overdue_actions(documents(), MAR_10, unit="punjab") == []
    closed = lifecycle().add(
        r.ResolutionClosed(
            resolution_id=RESOLUTION,
            outcome=r.CloseOutcome.SUPERSEDED,
            reason="Replaced",
            superseded_by=None,
        ),
        datetime(2016, 3, 2, tzinfo=UTC),
    )
    assert overdue_actions(documents(closed), MAR_10) == []


def test_meeting_history_gives_quarter_host_attendance_and_resolutions() -> None:
    [meeting] = meeting_history(documents())
    assert (meeting.quarter, meeting.date, meeting.host_unit, meeting.status) == (
        "2015-Q4",
        date(2015, 11, 26),
        "ajk",
        "held",
    )
    assert meeting.attendance == {"ajk": 2, "punjab": 1, "ncsw": 1}
    assert list(meeting.attendance) == ["punjab", "ajk", "ncsw"]  # in the units' order
    assert (meeting.attendees, meeting.units_present, meeting.resolutions_passed) == (4, 3, 1)
    assert meeting_history(documents(), "2016-Q1") == []


def test_the_quarterly_report_and_its_csv() -> None:
    report = quarterly_report(documents(), "2016-Q1", datetime(2016, 3, 10, 6, tzinfo=UTC))
    assert report.meetings == ()
    assert report.resolutions_passed == ()
    assert [(a.action_id, a.on_time, a.days_overdue) for a in report.actions] == [
        ("a1", True, None),
        ("a2", False, 9),
    ]
    assert [c.unit for c in report.scorecards] == ["punjab", "sindh"]
    rows = list(quarter_csv_rows(report))
    assert rows[0] == QUARTER_CSV_COLUMNS
    assert rows[1][:6] == (
        "2016-Q1",
        "1",
        "Independent WDDs by June",
        "independent_wdds",
        "a1",
        "punjab",
    )
    assert rows[1][10:13] == ("2016-01-28", "yes", "")
    assert rows[2][10:13] == ("", "no", "9")
    older = quarterly_report(documents(), "2015-Q4", datetime(2016, 3, 10, tzinfo=UTC))
    assert len(older.meetings) == 1
    assert len(older.resolutions_passed) == 1


def test_csv_cells_never_start_a_formula() -> None:
    assert spreadsheet_safe("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert spreadsheet_safe("-1") == "'-1"
    assert spreadsheet_safe("Plan") == "Plan"


def test_the_chart_draws_bars_in_proportion() -> None:
    cards = scorecards(documents(), MAR_10, "2016-Q1")
    chart = scorecard_chart("2016-Q1", cards)
    assert [group.unit for group in chart.groups] == ["punjab", "sindh"]
    punjab = {bar.series: bar for bar in chart.groups[0].bars}
    assert punjab["assigned"].height == punjab["completed"].height == PLOT_HEIGHT / 2
    assert punjab["overdue"].height == 0
    assert [tick.value for tick in chart.ticks] == [0, 1, 2]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), day=st.dates(date(2015, 11, 1), date(2018, 1, 1)))
def test_scorecards_add_up_for_any_history_and_day(seed: int, day: date) -> None:
    writer = HistoryWriter(seed=seed)
    docs = model_from_envelopes(
        e.to_json() for e in envelopes_of([*writer.story(), *writer.random_commits(80)])
    ).documents
    cards = scorecards(docs, day)
    for card in cards:
        assert card.actions_assigned == (
            card.completed + card.in_progress + card.blocked + card.not_started
        )
        assert card.overdue <= card.actions_assigned - card.completed
        assert card.completed_on_time <= card.completed
        assert card.feedback_given + card.feedback_pending == card.feedback_requested
        rate = card.on_time_completion_rate
        assert rate is None or 0 <= rate <= 1
    assert sum(card.overdue for card in cards) == len(overdue_actions(docs, day))
    all_actions = sum(len(row.actions) for row in tracker(docs, day))
    assert sum(card.actions_assigned for card in cards) == all_actions
