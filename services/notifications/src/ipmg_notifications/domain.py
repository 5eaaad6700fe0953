"""What to tell whom, and when: the notifications service's pure decisions.

- ``notices_for`` says which notices an upstream event calls for (one per unit, with what
  that unit needs to read), given the facts this service's projection knows;
  ``recipients`` turns a notice into addressed messages from the member directory.
- ``reminders_due`` says which reminders, follow-ups and digests are due on a given day,
  from the projection of deadlines; each has a key (kind, entity, unit, due date) that is
  issued at most once.
- ``retry_delay`` is the delivery policy; ``is_stale`` and ``Notice.is_past`` say what is
  not news any more (history being replayed, a meeting already over) and is not sent.

Identities are derived, never drawn: a delivery's id comes from (cause event, channel,
recipient), a reminder's stream from its key, so doing the same work twice finds the first.
Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

from ipmg_contracts.meetings import (
    MeetingCancelled,
    MeetingHeld,
    MeetingRescheduled,
    MeetingScheduled,
    MinutesPublished,
)
from ipmg_contracts.notifications import (
    REMINDER_NOTIFICATION_KIND,
    Channel,
    NotificationKind,
    ReminderKind,
)
from ipmg_contracts.resolutions import (
    ActionPlanAdopted,
    FeedbackReceived,
    ProgressReported,
    ProgressStatus,
    ResolutionAmended,
    ResolutionApproved,
    ResolutionCirculated,
    ResolutionClosed,
    ResolutionPassed,
    ResolutionSigned,
)
from ipmg_notifications.directory import Directory, DirectoryRole
from ipmg_shared.actors import Unit
from ipmg_shared.events import DomainEvent

SUBJECT_MAX_CHARS = 300  # NotificationSent.subject

# Fixed forever: derived ids must come out the same in every process and every release.
IDENTITY_NAMESPACE = UUID("5d0c3f59-8d3e-4d0f-9a53-1b6c0e7e2a41")

UNIT_NAMES: Mapping[Unit, str] = {
    Unit.PUNJAB: "Punjab",
    Unit.SINDH: "Sindh",
    Unit.KHYBER_PAKHTUNKHWA: "Khyber Pakhtunkhwa",
    Unit.BALOCHISTAN: "Balochistan",
    Unit.AJK: "Azad Jammu & Kashmir",
    Unit.GILGIT_BALTISTAN: "Gilgit-Baltistan",
    Unit.NCSW: "National Commission on the Status of Women",
    Unit.MLJHR: "Ministry of Law, Justice and Human Rights",
}

_EVERYONE_IN_THE_UNIT = frozenset({DirectoryRole.MEMBER, DirectoryRole.FOCAL_PERSON})
_FOCAL_PERSONS = frozenset({DirectoryRole.FOCAL_PERSON})

AUDIENCE: Mapping[NotificationKind, frozenset[DirectoryRole]] = {
    NotificationKind.INVITATION: _EVERYONE_IN_THE_UNIT,
    NotificationKind.MEETING_CHANGED: _EVERYONE_IN_THE_UNIT,
    NotificationKind.MEETING_CANCELLED: _EVERYONE_IN_THE_UNIT,
    NotificationKind.FEEDBACK_REQUEST: _FOCAL_PERSONS,
    NotificationKind.SIGNED_TEXT: _EVERYONE_IN_THE_UNIT,
    NotificationKind.ACTIONS_ASSIGNED: _EVERYONE_IN_THE_UNIT,
    NotificationKind.FEEDBACK_REMINDER: _FOCAL_PERSONS,
    NotificationKind.ACTION_FOLLOW_UP: _FOCAL_PERSONS,
    NotificationKind.QUARTERLY_DIGEST: frozenset({DirectoryRole.SECRETARIAT}),
}

# The signed text prepares the next quarter's action plan: after a quarter it is no news.
SIGNED_TEXT_NEWS_FOR = timedelta(days=92)

# Follow-ups go to actions that nobody has moved forward: never reported on, or blocked.
WITHOUT_PROGRESS = frozenset({ProgressStatus.NOT_STARTED, ProgressStatus.BLOCKED})


class MissingFacts(Exception):
    """An event refers to a meeting or resolution this service has not seen (a bug upstream
    of the handler: the consumer runner delivers each stream in order, gaps refused)."""


def days_after(day: date, days: int) -> date:
    """``day`` moved by ``days`` (negative: before), held at the calendar's ends: the
    contract allows any date from year 1 to 9999, and arithmetic must not overflow on them."""
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return date.max if days > 0 else date.min


def long_date(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def headline(text: str, limit: int = SUBJECT_MAX_CHARS) -> str:
    """``text`` on one line (an email header cannot hold a line break), cut to ``limit``."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


# --- facts from the projection ------------------------------------------------------------


@dataclass(frozen=True)
class MeetingFacts:
    meeting_id: UUID
    scheduled_for: date
    host_unit: Unit
    venue: str
    occasion: str | None


@dataclass(frozen=True)
class ResolutionFacts:
    resolution_id: UUID
    number: int
    title: str
    text: str
    responsible_units: tuple[Unit, ...]

    def to_context(self) -> dict[str, Any]:
        return {
            "id": str(self.resolution_id),
            "number": self.number,
            "title": self.title,
            "text": self.text,
        }


@dataclass(frozen=True)
class Facts:
    """What the projection knew just before the event: the event's meeting or resolution."""

    meeting: MeetingFacts | None = None
    resolution: ResolutionFacts | None = None

    def require_meeting(self) -> MeetingFacts:
        if self.meeting is None:
            raise MissingFacts("the meeting of this event is not known")
        return self.meeting

    def require_resolution(self) -> ResolutionFacts:
        if self.resolution is None:
            raise MissingFacts("the resolution of this event is not known")
        return self.resolution


# The events whose notices read what the projection knew before them (``notices_for`` asks
# ``Facts`` for it); the others are told from the event alone, so no facts are read for them.
NOTICES_READ_FACTS: frozenset[type[DomainEvent]] = frozenset(
    {
        MeetingRescheduled,
        MeetingCancelled,
        ResolutionCirculated,
        ResolutionSigned,
        ActionPlanAdopted,
    }
)


# --- notices ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """One unit's message about one cause; ``context`` feeds the kind's templates.

    ``relevant_until`` is the last day the message is worth sending (the meeting's day, the
    feedback's due date ...); None: as long as its cause is news.
    """

    kind: NotificationKind
    unit: Unit
    subject: str
    context: Mapping[str, Any] = field(default_factory=dict)
    relevant_until: date | None = None

    def __post_init__(self) -> None:
        # A subject is one header line within the contract's length, whatever a title holds.
        object.__setattr__(self, "subject", headline(self.subject))

    def is_past(self, today: date) -> bool:
        """Nobody can act on it any more: e.g. history loaded today about meetings long held."""
        return self.relevant_until is not None and self.relevant_until < today


def notices_for(event: DomainEvent, facts: Facts) -> list[Notice]:
    """The notices ``event`` calls for; events that tell nobody anything give none."""
    match event:
        case MeetingScheduled():
            meeting = _meeting_context(
                event.meeting_id, event.scheduled_for, event.host_unit, event.venue, event.occasion
            )
            return _meeting_notices(
                NotificationKind.INVITATION, "Invitation", meeting, agenda=list(event.agenda)
            )
        case MeetingRescheduled():
            before = facts.require_meeting()
            meeting = _meeting_context(
                event.meeting_id, event.scheduled_for, event.host_unit, event.venue, before.occasion
            )
            return _meeting_notices(
                NotificationKind.MEETING_CHANGED,
                "Changed",
                meeting,
                previous=_known_meeting_context(before),
                reason=event.reason,
            )
        case MeetingCancelled():
            before = facts.require_meeting()
            return _meeting_notices(
                NotificationKind.MEETING_CANCELLED,
                "Cancelled",
                _known_meeting_context(before),
                reason=event.reason,
            )
        case ResolutionCirculated():
            resolution = facts.require_resolution()
            return [
                Notice(
                    NotificationKind.FEEDBACK_REQUEST,
                    unit,
                    f"Feedback requested by {long_date(event.feedback_due)}: "
                    f"Resolution {resolution.number}, {resolution.title}",
                    {
                        "resolution": resolution.to_context(),
                        "feedback_due": event.feedback_due,
                        "participants": [UNIT_NAMES[p] for p in event.participants],
                    },
                    relevant_until=event.feedback_due,
                )
                for unit in event.participants
            ]
        case ResolutionSigned():
            resolution = facts.require_resolution()
            signatories = [
                {"name": s.name, "role": s.role, "unit": UNIT_NAMES[s.unit]}
                for s in event.signatories
            ]
            return [
                Notice(
                    NotificationKind.SIGNED_TEXT,
                    unit,
                    f"Signed: Resolution {resolution.number}, {resolution.title}",
                    {
                        "resolution": resolution.to_context(),
                        "signed_on": event.signed_on,
                        "signatories": signatories,
                    },
                    relevant_until=days_after(event.signed_on, SIGNED_TEXT_NEWS_FOR.days),
                )
                for unit in resolution.responsible_units
            ]
        case ActionPlanAdopted():
            resolution = facts.require_resolution()
            units = list(dict.fromkeys(action.unit for action in event.actions))
            return [
                Notice(
                    NotificationKind.ACTIONS_ASSIGNED,
                    unit,
                    f"Your actions for {event.quarter}: Resolution {resolution.number}, "
                    f"{resolution.title}",
                    {
                        "resolution": resolution.to_context(),
                        "quarter": event.quarter,
                        # Each unit reads its own actions only.
                        "actions": [
                            {
                                "action_id": action.action_id,
                                "description": action.description,
                                "due_on": action.due_on,
                            }
                            for action in event.actions
                            if action.unit is unit
                        ],
                    },
                    relevant_until=max(a.due_on for a in event.actions if a.unit is unit),
                )
                for unit in units
            ]
        case (
            MeetingHeld()
            | MinutesPublished()
            | ResolutionPassed()
            | FeedbackReceived()
            | ResolutionAmended()
            | ResolutionApproved()
            | ProgressReported()
            | ResolutionClosed()
        ):
            return []
        case _:
            raise TypeError(f"not an event this service reads: {type(event).__name__}")


def _meeting_context(
    meeting_id: UUID, day: date, host: Unit, venue: str, occasion: str | None
) -> dict[str, Any]:
    return {
        "id": str(meeting_id),
        "date": day,
        "host": UNIT_NAMES[host],
        "venue": venue,
        "occasion": occasion,
    }


def _known_meeting_context(meeting: MeetingFacts) -> dict[str, Any]:
    return _meeting_context(
        meeting.meeting_id,
        meeting.scheduled_for,
        meeting.host_unit,
        meeting.venue,
        meeting.occasion,
    )


def _meeting_notices(
    kind: NotificationKind, label: str, meeting: dict[str, Any], **extra: Any
) -> list[Notice]:
    subject = f"{label}: IPMG meeting on {long_date(meeting['date'])}, hosted by {meeting['host']}"
    context = {"meeting": meeting, **extra}
    # Every member unit is told: the IPMG is all of them. A meeting that is over is news to
    # nobody, whatever happened to it.
    return [Notice(kind, unit, subject, context, meeting["date"]) for unit in Unit]


# --- addressing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    unit: Unit
    channel: Channel
    address: str  # an email address, or the unit's webhook URL
    person: str | None  # None for a unit's webhook

    @property
    def key(self) -> str:
        """Stable across directory edits that only rename a person."""
        return f"{self.channel.value}:{self.unit.value}:{self.address.lower()}"


def recipients(notice: Notice, directory: Directory) -> list[Recipient]:
    """Each directory person of the notice's unit in the kind's audience, then its webhook."""
    entry = directory.entry(notice.unit)
    found = [
        Recipient(notice.unit, Channel.EMAIL, person.email, person.name)
        for person in entry.people_in(AUDIENCE[notice.kind])
    ]
    if entry.webhook_url is not None:
        found.append(Recipient(notice.unit, Channel.WEBHOOK, str(entry.webhook_url), None))
    return found


def delivery_id(cause_event_id: UUID, recipient: Recipient) -> UUID:
    """The idempotency key of one message: per cause event, recipient and channel."""
    return uuid5(IDENTITY_NAMESPACE, f"delivery|{cause_event_id}|{recipient.key}")


def is_stale(recorded_at: datetime, now: datetime, stale_after: timedelta) -> bool:
    """A cause recorded longer ago than ``stale_after`` is history being replayed, not news:
    it updates the projection but sends nothing."""
    return now - recorded_at > stale_after


# --- retries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_s: float
    max_s: float

    def gives_up_after(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


def retry_delay(policy: RetryPolicy, attempts: int, jitter: float) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones.

    Exponential (base, 2 base, 4 base ...) up to ``max_s``, with "equal jitter": a random
    point in the upper half, so retries of many messages spread out but never come early.
    ``jitter`` is a random number in [0, 1).
    """
    exponent = min(max(attempts - 1, 0), 60)  # 2**60 is past any sensible ceiling
    ceiling = min(policy.max_s, policy.base_s * 2.0**exponent)
    return ceiling / 2 + ceiling / 2 * min(max(jitter, 0.0), 1.0)


# --- reminders ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedbackDeadline:
    """A participant unit's feedback on a resolution now in circulation."""

    resolution: ResolutionFacts
    unit: Unit
    due_on: date
    answered: bool


@dataclass(frozen=True)
class ActionDeadline:
    """An action of an adopted plan whose resolution is not closed."""

    resolution: ResolutionFacts
    action_id: str
    unit: Unit
    description: str
    due_on: date
    status: ProgressStatus
    percent: int


@dataclass(frozen=True)
class ReminderPolicy:
    lead_days: int  # feedback reminders start this many days before the due date
    stale_after_days: int  # a reminder whose day passed longer ago is not sent late


@dataclass(frozen=True)
class ReminderDue:
    kind: ReminderKind
    entity: str
    unit: Unit
    due_on: date
    resolution_id: UUID | None = None
    action_id: str | None = None
    quarter: str | None = None
    about: FeedbackDeadline | ActionDeadline | None = field(default=None, compare=False)

    @property
    def key(self) -> tuple[str, str, str, date]:
        return (self.kind.value, self.entity, self.unit.value, self.due_on)

    @property
    def stream_id(self) -> str:
        """The reminder's key as a stream id: a second issue of it finds the stream taken."""
        return f"reminder-{self.kind.value}-{self.entity}-{self.unit.value}-{self.due_on}"


def reminder_day(kind: ReminderKind, due_on: date, policy: ReminderPolicy) -> date:
    """The first day a reminder of ``kind`` for ``due_on`` may go out."""
    if kind is ReminderKind.FEEDBACK_DUE:
        return days_after(due_on, -policy.lead_days)
    if kind is ReminderKind.ACTION_OVERDUE:
        return days_after(due_on, 1)  # overdue: the due day itself has passed
    return due_on  # a digest goes out on the first day of the next quarter


def _in_window(kind: ReminderKind, due_on: date, today: date, policy: ReminderPolicy) -> bool:
    first = reminder_day(kind, due_on, policy)
    return first <= today and (today - first).days < policy.stale_after_days


def reminders_due(
    today: date,
    feedback: Iterable[FeedbackDeadline],
    actions: Iterable[ActionDeadline],
    policy: ReminderPolicy,
) -> list[ReminderDue]:
    """Reminders, follow-ups and the digest due on ``today``, each key once, in key order.

    The caller skips those already issued; a key that was issued is never due again.
    """
    due: dict[tuple[str, str, str, date], ReminderDue] = {}
    for deadline in feedback:
        kind = ReminderKind.FEEDBACK_DUE
        if deadline.answered or not _in_window(kind, deadline.due_on, today, policy):
            continue
        reminder = ReminderDue(
            kind,
            str(deadline.resolution.resolution_id),
            deadline.unit,
            deadline.due_on,
            resolution_id=deadline.resolution.resolution_id,
            about=deadline,
        )
        due.setdefault(reminder.key, reminder)
    for action in actions:
        kind = ReminderKind.ACTION_OVERDUE
        if action.status not in WITHOUT_PROGRESS or not _in_window(
            kind, action.due_on, today, policy
        ):
            continue
        reminder = ReminderDue(
            kind,
            f"{action.resolution.resolution_id}/{action.action_id}",
            action.unit,
            action.due_on,
            resolution_id=action.resolution.resolution_id,
            action_id=action.action_id,
            about=action,
        )
        due.setdefault(reminder.key, reminder)
    digest = digest_due(today, policy)
    if digest is not None:
        due.setdefault(digest.key, digest)
    return [due[key] for key in sorted(due)]


def digest_due(today: date, policy: ReminderPolicy) -> ReminderDue | None:
    """The digest of the quarter that ended before ``today``'s quarter, early in the new one."""
    starts = quarter_start(today)
    if not _in_window(ReminderKind.QUARTERLY_DIGEST, starts, today, policy):
        return None
    ended = quarter_of(starts - timedelta(days=1))
    return ReminderDue(ReminderKind.QUARTERLY_DIGEST, ended, Unit.NCSW, starts, quarter=ended)


def quarter_of(day: date) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def quarter_start(day: date) -> date:
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def quarter_bounds(quarter: str) -> tuple[date, date]:
    """The first day of ``quarter`` and the first day after it."""
    year, number = int(quarter[:4]), int(quarter[-1])
    first = date(year, 3 * (number - 1) + 1, 1)
    after = date(year + 1, 1, 1) if number == 4 else date(year, 3 * number + 1, 1)
    return first, after


# --- reminder notices ---------------------------------------------------------------------


@dataclass(frozen=True)
class QuarterFigures:
    """What the digest counts for its quarter (from the service's own records)."""

    sent: int
    failed: int
    reminders: int
    follow_ups: int


def reminder_notice(
    reminder: ReminderDue,
    today: date,
    *,
    figures: QuarterFigures | None = None,
    open_feedback: Sequence[FeedbackDeadline] = (),
    overdue_actions: Sequence[ActionDeadline] = (),
) -> Notice:
    """The notice a due reminder sends (the digest needs its figures and open items)."""
    kind = REMINDER_NOTIFICATION_KIND[reminder.kind]
    about = reminder.about
    if isinstance(about, FeedbackDeadline):
        overdue = today > about.due_on
        when = "was due" if overdue else "is due"
        return Notice(
            kind,
            reminder.unit,
            f"Reminder: feedback {when} {long_date(about.due_on)} on Resolution "
            f"{about.resolution.number}, {about.resolution.title}",
            {
                "resolution": about.resolution.to_context(),
                "feedback_due": about.due_on,
                "overdue": overdue,
            },
        )
    if isinstance(about, ActionDeadline):
        return Notice(
            kind,
            reminder.unit,
            f"Follow-up: action {about.action_id} was due {long_date(about.due_on)} "
            f"(Resolution {about.resolution.number})",
            {
                "resolution": about.resolution.to_context(),
                "action": {
                    "action_id": about.action_id,
                    "description": about.description,
                    "due_on": about.due_on,
                    "status": about.status.value.replace("_", " "),
                    "percent": about.percent,
                },
            },
        )
    if reminder.kind is not ReminderKind.QUARTERLY_DIGEST or reminder.quarter is None:
        raise ValueError(f"reminder {reminder.key} carries nothing to tell")
    figures = figures or QuarterFigures(0, 0, 0, 0)
    return Notice(
        kind,
        reminder.unit,
        f"IPMG quarterly digest, {reminder.quarter}",
        {
            "quarter": reminder.quarter,
            "figures": {
                "sent": figures.sent,
                "failed": figures.failed,
                "reminders": figures.reminders,
                "follow_ups": figures.follow_ups,
            },
            "open_feedback": [
                {
                    "resolution": item.resolution.to_context(),
                    "unit": UNIT_NAMES[item.unit],
                    "due_on": item.due_on,
                }
                for item in open_feedback
                if not item.answered
            ],
            "overdue_actions": [
                {
                    "resolution": item.resolution.to_context(),
                    "action_id": item.action_id,
                    "unit": UNIT_NAMES[item.unit],
                    "due_on": item.due_on,
                    "status": item.status.value.replace("_", " "),
                }
                for item in overdue_actions
            ],
        },
    )
