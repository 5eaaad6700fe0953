"""Reports computed from projection documents by pure functions (no I/O).

Live answers, answers as of a past instant and an auditor's replay all come through here;
only where the documents come from differs. Anything relative to "now" (overdue, on time)
takes the reference day as an argument, the day of the report's instant in Pakistan.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta, timezone

from pydantic import BaseModel, ConfigDict

from ipmg_reporting.projections import (
    ActionDoc,
    Documents,
    MeetingDoc,
    NotificationDoc,
    ResolutionDoc,
    SignatoryDoc,
    unit_name,
)
from ipmg_shared.actors import Unit
from ipmg_shared.canonical import parse_instant

# Pakistan Standard Time has no daylight saving: dates of reports are Pakistan's dates.
REPORTING_TZ = timezone(timedelta(hours=5), "PKT")
QUARTER_PATTERN = re.compile(r"^[0-9]{4}-Q[1-4]$")
UNIT_ORDER = {unit.value: index for index, unit in enumerate(Unit)}


class ReportModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def reference_day(instant: datetime) -> date:
    return instant.astimezone(REPORTING_TZ).date()


def local_day(instant: str) -> date:
    return reference_day(parse_instant(instant))


def quarter_of(day: date) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def quarter_bounds(quarter: str) -> tuple[date, date]:
    """First and last day of a quarter such as ``2016-Q1``."""
    if not QUARTER_PATTERN.match(quarter):
        raise ValueError(f"not a quarter: {quarter!r} (expected e.g. 2016-Q1)")
    year, number = int(quarter[:4]), int(quarter[-1])
    first = date(year, 3 * number - 2, 1)
    after = date(year + 1, 1, 1) if number == 4 else date(year, 3 * number + 1, 1)
    return first, after - timedelta(days=1)


def _unit_key(unit: str) -> tuple[int, str]:
    return (UNIT_ORDER.get(unit, len(UNIT_ORDER)), unit)


def _days_between(start: str, end: str) -> float:
    return (parse_instant(end) - parse_instant(start)).total_seconds() / 86_400


# --- resolution tracker -------------------------------------------------------------------


class FeedbackPosition(ReportModel):
    unit: str
    unit_name: str
    person: str
    position: str
    comments: str | None
    given_at: str
    round: int


class TrackedAction(ReportModel):
    action_id: str
    unit: str
    unit_name: str
    description: str
    due_on: date
    status: str
    percent: int
    narrative: str | None
    evidence: tuple[str, ...]
    last_reported_at: str | None
    completed_at: str | None
    days_overdue: int | None


class TrackerRow(ReportModel):
    resolution_id: str
    number: int
    reference: str
    title: str
    status: str
    priority_area: str
    meeting_id: str
    meeting_date: date | None
    meeting_host: str | None
    passed_on: date
    responsible_units: tuple[str, ...]
    commitments: tuple[str, ...]
    circulation_round: int
    feedback_due: date | None
    feedback: tuple[FeedbackPosition, ...]
    positions: dict[str, int]
    awaiting_feedback: tuple[str, ...]
    amendments: int
    approved_at: str | None
    signed_on: date | None
    signatories: tuple[SignatoryDoc, ...]
    quarter: str | None
    actions: tuple[TrackedAction, ...]
    outcome: str | None
    closed_at: str | None

    @property
    def units(self) -> set[str]:
        """Every unit the resolution concerns: responsible, consulted or with an action."""
        return (
            set(self.responsible_units)
            | {item.unit for item in self.feedback}
            | set(self.awaiting_feedback)
            | {action.unit for action in self.actions}
        )


def days_overdue(resolution: ResolutionDoc, action: ActionDoc, today: date) -> int | None:
    """Days past due for an open action of an open resolution; None when not overdue."""
    if resolution.status == "closed" or action.status == "completed" or action.due_on >= today:
        return None
    return (today - action.due_on).days


def tracker_row(documents: Documents, resolution: ResolutionDoc, today: date) -> TrackerRow:
    meeting = documents.meetings.get(resolution.meeting_id)
    positions = resolution.current_positions()
    current = resolution.current_round
    feedback = tuple(
        FeedbackPosition(
            unit=item.unit,
            unit_name=unit_name(item.unit),
            person=item.person,
            position=item.position,
            comments=item.comments,
            given_at=item.given_at,
            round=item.round,
        )
        for item in sorted(positions.values(), key=lambda item: _unit_key(item.unit))
    )
    awaiting = () if current is None or resolution.status != "circulated" else current.participants
    return TrackerRow(
        resolution_id=resolution.resolution_id,
        number=resolution.number,
        reference=resolution.reference,
        title=resolution.title,
        status=resolution.status,
        priority_area=resolution.priority_area,
        meeting_id=resolution.meeting_id,
        meeting_date=None if meeting is None else meeting.day,
        meeting_host=None if meeting is None else meeting.host_unit,
        passed_on=resolution.passed_on,
        responsible_units=resolution.responsible_units,
        commitments=resolution.commitments,
        circulation_round=len(resolution.rounds),
        feedback_due=None if current is None else current.feedback_due,
        feedback=feedback,
        positions=dict(Counter(item.position for item in positions.values())),
        awaiting_feedback=tuple(unit for unit in awaiting if unit not in positions),
        amendments=resolution.amendments,
        approved_at=resolution.approved_at,
        signed_on=resolution.signed_on,
        signatories=resolution.signatories,
        quarter=resolution.quarter,
        actions=tuple(
            TrackedAction(
                action_id=action.action_id,
                unit=action.unit,
                unit_name=unit_name(action.unit),
                description=action.description,
                due_on=action.due_on,
                status=action.status,
                percent=action.percent,
                narrative=action.narrative,
                evidence=action.evidence,
                last_reported_at=action.last_reported_at,
                completed_at=action.completed_at,
                days_overdue=days_overdue(resolution, action, today),
            )
            for action in resolution.actions
        ),
        outcome=resolution.outcome,
        closed_at=resolution.closed_at,
    )


def tracker(
    documents: Documents,
    today: date,
    *,
    unit: str | None = None,
    status: str | None = None,
    priority_area: str | None = None,
) -> list[TrackerRow]:
    """Every resolution's state, oldest first, optionally narrowed to a unit/status/area."""
    rows = [
        tracker_row(documents, resolution, today)
        for resolution in sorted(
            documents.resolutions.values(),
            key=lambda r: (r.passed_on, r.number, r.resolution_id),
        )
        if (status is None or resolution.status == status)
        and (priority_area is None or resolution.priority_area == priority_area)
    ]
    return [row for row in rows if unit is None or unit in row.units]


# --- unit scorecards ----------------------------------------------------------------------


class UnitScorecard(ReportModel):
    quarter: str
    unit: str
    unit_name: str
    actions_assigned: int
    completed: int
    in_progress: int
    blocked: int
    not_started: int
    overdue: int
    completed_on_time: int
    # Completed on or before the due day, over actions completed or already due; None: none.
    on_time_completion_rate: float | None
    feedback_requested: int  # circulation rounds of the quarter that asked this unit
    feedback_given: int
    feedback_pending: int
    # Mean days from a round's circulation to the unit's first feedback in it.
    feedback_turnaround_days: float | None


class _Tally:
    def __init__(self) -> None:
        self.statuses: Counter[str] = Counter()
        self.overdue = 0
        self.on_time = 0
        self.due_or_done = 0
        self.requested = 0
        self.turnarounds: list[float] = []


def scorecards(
    documents: Documents, today: date, quarter: str | None = None
) -> list[UnitScorecard]:
    """Per quarter (actions by their plan's quarter, feedback by the circulation's) and unit."""
    tallies: dict[tuple[str, str], _Tally] = {}

    def tally(q: str, unit: str) -> _Tally:
        return tallies.setdefault((q, unit), _Tally())

    for resolution in documents.resolutions.values():
        if resolution.quarter is not None and quarter in (None, resolution.quarter):
            for action in resolution.actions:
                counts = tally(resolution.quarter, action.unit)
                counts.statuses[action.status] += 1
                if days_overdue(resolution, action, today) is not None:
                    counts.overdue += 1
                done_on = None if action.completed_at is None else local_day(action.completed_at)
                if action.status == "completed" or action.due_on < today:
                    counts.due_or_done += 1
                if action.status == "completed" and done_on is not None:
                    counts.on_time += done_on <= action.due_on
        for round_doc in resolution.rounds:
            round_quarter = quarter_of(local_day(round_doc.circulated_at))
            if quarter not in (None, round_quarter):
                continue
            first_answer: dict[str, str] = {}
            for item in resolution.feedback:
                if item.round == round_doc.round:
                    first_answer.setdefault(item.unit, item.given_at)
            for unit in round_doc.participants:
                counts = tally(round_quarter, unit)
                counts.requested += 1
                if unit in first_answer:
                    counts.turnarounds.append(
                        _days_between(round_doc.circulated_at, first_answer[unit])
                    )
    cards = []
    for (q, unit), counts in tallies.items():
        assigned = sum(counts.statuses.values())
        given = len(counts.turnarounds)
        cards.append(
            UnitScorecard(
                quarter=q,
                unit=unit,
                unit_name=unit_name(unit),
                actions_assigned=assigned,
                completed=counts.statuses["completed"],
                in_progress=counts.statuses["in_progress"],
                blocked=counts.statuses["blocked"],
                not_started=counts.statuses["not_started"],
                overdue=counts.overdue,
                completed_on_time=counts.on_time,
                on_time_completion_rate=round(counts.on_time / counts.due_or_done, 3)
                if counts.due_or_done
                else None,
                feedback_requested=counts.requested,
                feedback_given=given,
                feedback_pending=counts.requested - given,
                feedback_turnaround_days=round(sum(counts.turnarounds) / given, 2)
                if given
                else None,
            )
        )
    return sorted(cards, key=lambda card: (card.quarter, _unit_key(card.unit)))


def quarters(documents: Documents) -> list[str]:
    """Every quarter with a meeting, an action plan or a circulation, oldest first."""
    found: set[str] = set()
    for meeting in documents.meetings.values():
        if meeting.day is not None:
            found.add(quarter_of(meeting.day))
    for resolution in documents.resolutions.values():
        if resolution.quarter is not None:
            found.add(resolution.quarter)
        found.update(quarter_of(local_day(r.circulated_at)) for r in resolution.rounds)
    return sorted(found)


# --- meeting history ----------------------------------------------------------------------


class MeetingRow(ReportModel):
    meeting_id: str
    quarter: str | None
    date: date | None
    status: str
    host_unit: str | None
    host_name: str | None
    venue: str | None
    occasion: str | None
    attendance: dict[str, int]  # attendees per unit
    attendees: int
    units_present: int
    resolutions_passed: int
    minutes_published: bool
    reschedules: int
    cancellation_reason: str | None


def meeting_row(meeting: MeetingDoc, resolutions_passed: int) -> MeetingRow:
    attendance = Counter(attendee.unit for attendee in meeting.attendees)
    day = meeting.day
    return MeetingRow(
        meeting_id=meeting.meeting_id,
        quarter=None if day is None else quarter_of(day),
        date=day,
        status=meeting.status,
        host_unit=meeting.host_unit,
        host_name=None if meeting.host_unit is None else unit_name(meeting.host_unit),
        venue=meeting.venue,
        occasion=meeting.occasion,
        attendance=dict(sorted(attendance.items(), key=lambda item: _unit_key(item[0]))),
        attendees=len(meeting.attendees),
        units_present=len(attendance),
        resolutions_passed=resolutions_passed,
        minutes_published=meeting.minutes_published_at is not None,
        reschedules=meeting.reschedules,
        cancellation_reason=meeting.cancellation_reason,
    )


def meeting_history(documents: Documents, quarter: str | None = None) -> list[MeetingRow]:
    """Every meeting by date: quarter, host (the rotation), occasion, attendance per unit."""
    passed = Counter(resolution.meeting_id for resolution in documents.resolutions.values())
    rows = [
        meeting_row(meeting, passed[meeting.meeting_id]) for meeting in documents.meetings.values()
    ]
    return sorted(
        (row for row in rows if quarter is None or row.quarter == quarter),
        key=lambda row: (row.date or date.max, row.meeting_id),
    )


# --- overdue actions ----------------------------------------------------------------------


class OverdueAction(ReportModel):
    resolution_id: str
    resolution_number: int
    resolution_reference: str
    resolution_title: str
    quarter: str | None
    action_id: str
    unit: str
    unit_name: str
    description: str
    due_on: date
    days_overdue: int
    status: str
    percent: int
    last_reported_at: str | None


def overdue_actions(
    documents: Documents, today: date, *, unit: str | None = None
) -> list[OverdueAction]:
    """Open actions past their due day, the latest first: what is late, by how long, whose."""
    late = []
    for resolution in documents.resolutions.values():
        for action in resolution.actions:
            days = days_overdue(resolution, action, today)
            if days is None or unit not in (None, action.unit):
                continue
            late.append(
                OverdueAction(
                    resolution_id=resolution.resolution_id,
                    resolution_number=resolution.number,
                    resolution_reference=resolution.reference,
                    resolution_title=resolution.title,
                    quarter=resolution.quarter,
                    action_id=action.action_id,
                    unit=action.unit,
                    unit_name=unit_name(action.unit),
                    description=action.description,
                    due_on=action.due_on,
                    days_overdue=days,
                    status=action.status,
                    percent=action.percent,
                    last_reported_at=action.last_reported_at,
                )
            )
    return sorted(
        late,
        key=lambda a: (-a.days_overdue, a.resolution_number, a.resolution_id, a.action_id),
    )


# --- notifications log --------------------------------------------------------------------


class NotificationRow(ReportModel):
    delivery_id: str
    kind: str
    channel: str
    unit: str
    unit_name: str
    person: str | None
    address: str
    subject: str
    status: str  # sent, failed
    rounds: int
    attempts: int
    error: str | None
    cause_type: str  # the event that called for it (e.g. MeetingScheduled, ReminderIssued)
    cause_source: str
    cause_event_id: str
    first_at: str
    sent_at: str | None
    updated_at: str


def notification_row(delivery: NotificationDoc) -> NotificationRow:
    fields = delivery.model_dump(exclude={"version"})
    return NotificationRow(**fields, unit_name=unit_name(delivery.unit))


def notification_log(
    documents: Documents,
    *,
    unit: str | None = None,
    kind: str | None = None,
    status: str | None = None,
) -> list[NotificationRow]:
    """What was sent to whom, when, by which channel, why, and how it went; latest first."""
    chosen = (
        delivery
        for delivery in documents.notifications.values()
        if unit in (None, delivery.unit)
        and kind in (None, delivery.kind)
        and status in (None, delivery.status)
    )
    rows = sorted(chosen, key=lambda delivery: (delivery.first_at, delivery.delivery_id))
    return [notification_row(delivery) for delivery in reversed(rows)]


# --- the quarterly report -----------------------------------------------------------------


class QuarterAction(ReportModel):
    resolution_id: str
    resolution_number: int
    resolution_reference: str
    resolution_title: str
    priority_area: str
    action_id: str
    unit: str
    unit_name: str
    description: str
    due_on: date
    status: str
    percent: int
    completed_on: date | None
    on_time: bool | None  # None: not completed and not yet due
    days_overdue: int | None
    narrative: str | None


class QuarterlyReport(ReportModel):
    quarter: str
    first_day: date
    last_day: date
    as_of: str
    reference_day: date
    meetings: tuple[MeetingRow, ...]
    resolutions_passed: tuple[TrackerRow, ...]
    actions: tuple[QuarterAction, ...]
    scorecards: tuple[UnitScorecard, ...]


def quarter_actions(documents: Documents, quarter: str, today: date) -> list[QuarterAction]:
    rows = []
    for resolution in documents.resolutions.values():
        if resolution.quarter != quarter:
            continue
        for action in resolution.actions:
            done_on = None if action.completed_at is None else local_day(action.completed_at)
            if action.status == "completed" and done_on is not None:
                on_time: bool | None = done_on <= action.due_on
            else:
                on_time = False if action.due_on < today else None
            rows.append(
                QuarterAction(
                    resolution_id=resolution.resolution_id,
                    resolution_number=resolution.number,
                    resolution_reference=resolution.reference,
                    resolution_title=resolution.title,
                    priority_area=resolution.priority_area,
                    action_id=action.action_id,
                    unit=action.unit,
                    unit_name=unit_name(action.unit),
                    description=action.description,
                    due_on=action.due_on,
                    status=action.status,
                    percent=action.percent,
                    completed_on=done_on,
                    on_time=on_time,
                    days_overdue=days_overdue(resolution, action, today),
                    narrative=action.narrative,
                )
            )
    return sorted(
        rows,
        key=lambda a: (a.resolution_number, a.resolution_id, _unit_key(a.unit), a.action_id),
    )


def quarterly_report(documents: Documents, quarter: str, as_of: datetime) -> QuarterlyReport:
    first, last = quarter_bounds(quarter)
    today = reference_day(as_of)
    passed = [row for row in tracker(documents, today) if first <= row.passed_on <= last]
    return QuarterlyReport(
        quarter=quarter,
        first_day=first,
        last_day=last,
        as_of=as_of.astimezone(UTC).isoformat(),
        reference_day=today,
        meetings=tuple(meeting_history(documents, quarter)),
        resolutions_passed=tuple(passed),
        actions=tuple(quarter_actions(documents, quarter, today)),
        scorecards=tuple(scorecards(documents, today, quarter)),
    )


QUARTER_CSV_COLUMNS = (
    "quarter",
    "resolution_number",
    "resolution_title",
    "priority_area",
    "action_id",
    "unit",
    "description",
    "due_on",
    "status",
    "percent",
    "completed_on",
    "on_time",
    "days_overdue",
    "latest_progress",
)


def quarter_csv_rows(report: QuarterlyReport) -> Iterable[tuple[str, ...]]:
    """The quarterly report as one row per action of the quarter's action plans."""
    yield QUARTER_CSV_COLUMNS
    for action in report.actions:
        yield (
            report.quarter,
            str(action.resolution_number),
            spreadsheet_safe(action.resolution_title),
            action.priority_area,
            action.action_id,
            action.unit,
            spreadsheet_safe(action.description),
            action.due_on.isoformat(),
            action.status,
            str(action.percent),
            "" if action.completed_on is None else action.completed_on.isoformat(),
            "" if action.on_time is None else ("yes" if action.on_time else "no"),
            "" if action.days_overdue is None else str(action.days_overdue),
            spreadsheet_safe(action.narrative or ""),
        )


def spreadsheet_safe(text: str) -> str:
    """Text a spreadsheet will not run as a formula (a leading quote marks it as text)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
