"""Valid IPMG histories for reporting's tests, made by the write services' own ``decide``.

A ``HistoryWriter`` keeps every meeting's and resolution's state, picks commands (a scripted
story, or random ones), lets the domain decide them and keeps what it accepts as ``Commit``s:
the events one command appended to one stream. Tests turn commits into envelopes in memory
(``envelopes_of``) or append them to real event stores.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from uuid import NAMESPACE_URL, UUID, uuid5

from ipmg_contracts import meetings as m
from ipmg_contracts import notifications as notify
from ipmg_contracts import resolutions as r
from ipmg_meetings import domain as meetings
from ipmg_resolutions import domain as resolutions
from ipmg_shared.actors import Actor, Role, Unit
from ipmg_shared.canonical import GENESIS_HASH, format_instant
from ipmg_shared.domain import CommandRefused
from ipmg_shared.envelope import Envelope, hash_event_fields
from ipmg_shared.events import DomainEvent

SECRETARIAT = Actor(subject="staff@ncsw.gov.pk", unit=Unit.NCSW, role=Role.SECRETARIAT)
START = datetime(2015, 11, 2, 9, 0, tzinfo=UTC)
MEETING_SCHEDULED = meetings.MeetingStatus.SCHEDULED
MEETING_HELD = meetings.MeetingStatus.HELD
COMPLETED = resolutions.ProgressStatus.COMPLETED
PROVINCES = [Unit.PUNJAB, Unit.SINDH, Unit.KHYBER_PAKHTUNKHWA, Unit.BALOCHISTAN, Unit.AJK]
VENUES = {
    Unit.AJK: "Muzaffarabad",
    Unit.PUNJAB: "Lahore",
    Unit.SINDH: "Karachi",
    Unit.KHYBER_PAKHTUNKHWA: "Peshawar",
    Unit.BALOCHISTAN: "Quetta",
    Unit.GILGIT_BALTISTAN: "Gilgit",
    Unit.NCSW: "Islamabad",
    Unit.MLJHR: "Islamabad",
}
TITLES = [
    "Report on CEDAW concluding observations",
    "Independent Women Development Departments in every province",
    "Leadership training for women parliamentarians",
    "Provincial action plans under the national policy",
    "Gender-responsive budgeting in WDDs",
    "Protection centres for women in every district",
]


def focal_person(unit: Unit) -> Actor:
    return Actor(subject=f"focal@{unit.value}.gov.pk", unit=unit, role=Role.FOCAL_PERSON)


def quarter_of(day: date) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


@dataclass(frozen=True)
class Commit:
    """What one accepted command appended: events to one stream, by one actor, at one time."""

    source: str
    stream_id: str
    events: tuple[DomainEvent, ...]
    actor: Actor
    at: datetime
    correlation_id: UUID


class HistoryWriter:
    def __init__(self, seed: int = 1, clock: datetime = START) -> None:
        self.random = random.Random(seed)
        self.clock = clock
        self.meetings: dict[UUID, meetings.MeetingState] = {}
        self.resolutions: dict[UUID, resolutions.ResolutionState] = {}
        self.refused = 0
        self._numbers = iter(range(1, 10_000))

    # --- plumbing ---------------------------------------------------------------------

    def _id(self) -> UUID:
        return UUID(int=self.random.getrandbits(128), version=4)

    def _tick(self, low_hours: float = 1, high_hours: float = 24) -> datetime:
        self.clock += timedelta(hours=self.random.uniform(low_hours, high_hours))
        return self.clock

    def meeting(self, command: meetings.MeetingCommand) -> Commit | None:
        state = self.meetings.get(command.meeting_id, meetings.MeetingState.initial())
        try:
            events = meetings.decide(command, state)
        except CommandRefused:
            self.refused += 1
            return None
        for event in events:
            state = meetings.evolve(state, event)
        self.meetings[command.meeting_id] = state
        return Commit(
            "meetings",
            f"meeting-{command.meeting_id}",
            tuple(events),
            command.actor,
            command.at,
            self._id(),
        )

    def resolution(self, command: resolutions.ResolutionCommand) -> Commit | None:
        state = self.resolutions.get(command.resolution_id, resolutions.ResolutionState.initial())
        try:
            events = resolutions.decide(command, state)
        except CommandRefused:
            self.refused += 1
            return None
        for event in events:
            state = resolutions.evolve(state, event)
        self.resolutions[command.resolution_id] = state
        return Commit(
            "resolutions",
            f"resolution-{command.resolution_id}",
            tuple(events),
            command.actor,
            command.at,
            self._id(),
        )

    # --- commands ---------------------------------------------------------------------

    def schedule(self, host: Unit, on: date, occasion: str | None = None) -> Commit | None:
        return self.meeting(
            meetings.ScheduleMeeting(
                actor=SECRETARIAT,
                at=self._tick(),
                meeting_id=self._id(),
                scheduled_for=on,
                host_unit=host,
                venue=VENUES[host],
                occasion=occasion,
            )
        )

    def hold(self, meeting_id: UUID) -> Commit | None:
        state = self.meetings[meeting_id]
        at = self._tick()
        units = self.random.sample(list(Unit), self.random.randint(3, len(Unit)))
        attendees = tuple(
            meetings.Attendee(name=f"Delegate {n} of {unit.value}", role="Member", unit=unit)
            for unit in units
            for n in range(1, self.random.randint(1, 3) + 1)
        )
        assert state.host_unit is not None
        return self.meeting(
            meetings.HoldMeeting(
                actor=SECRETARIAT,
                at=at,
                meeting_id=meeting_id,
                held_on=min(state.scheduled_for or at.date(), at.date()),
                host_unit=state.host_unit,
                venue=state.venue or VENUES[state.host_unit],
                occasion=state.occasion,
                attendees=attendees,
                agenda=("Follow-up of the action plan", "New resolutions"),
            )
        )

    def pass_resolution(
        self, meeting_id: UUID, area: resolutions.PriorityArea, units: list[Unit]
    ) -> Commit | None:
        state = self.meetings[meeting_id]
        facts = resolutions.HeldMeetingFacts(
            meeting_id=meeting_id,
            status=resolutions.MeetingStatus(state.status.value if state.status else "scheduled"),
            held_on=state.held_on,
            host_unit=state.host_unit,
        )
        return self.resolution(
            resolutions.PassResolution(
                actor=SECRETARIAT,
                at=self._tick(),
                resolution_id=self._id(),
                meeting_id=meeting_id,
                meeting=facts,
                number=next(self._numbers),
                title=self.random.choice(TITLES),
                text="The group resolves to act on this within the next quarter.",
                priority_area=area,
                commitments=(resolutions.Commitment(instrument="CEDAW", detail=None),),
                responsible_units=tuple(units),
            )
        )

    def circulate(self, resolution_id: UUID, units: list[Unit]) -> Commit | None:
        at = self._tick()
        return self.resolution(
            resolutions.CirculateResolution(
                actor=SECRETARIAT,
                at=at,
                resolution_id=resolution_id,
                participants=tuple(units),
                feedback_due=(at + timedelta(days=14)).date(),
            )
        )

    def feedback(
        self, resolution_id: UUID, unit: Unit, position: resolutions.Position
    ) -> Commit | None:
        return self.resolution(
            resolutions.GiveFeedback(
                actor=focal_person(unit),
                at=self._tick(2, 72),
                resolution_id=resolution_id,
                unit=unit,
                person=f"Secretary WDD {unit.value}",
                position=position,
                comments="Please add a timeline." if position.value == "amend" else None,
            )
        )

    def amend(self, resolution_id: UUID) -> Commit | None:
        return self.resolution(
            resolutions.AmendResolution(
                actor=SECRETARIAT,
                at=self._tick(),
                resolution_id=resolution_id,
                title=self.random.choice(TITLES) + " (amended)",
                reason="Feedback from the units",
            )
        )

    def approve(self, resolution_id: UUID) -> Commit | None:
        # The secretariat waits for the round to close and overrides what is still at issue.
        state = self.resolutions.get(resolution_id, resolutions.ResolutionState.initial())
        if state.feedback_due is not None and set(state.participants) - set(state.positions):
            after_due = datetime.combine(
                state.feedback_due + timedelta(days=1), datetime.min.time()
            )
            self.clock = max(self.clock, after_due.replace(tzinfo=UTC))
        at_issue = tuple(
            unit
            for unit, current in state.positions.items()
            if current.position is not resolutions.Position.ENDORSE
        )
        return self.resolution(
            resolutions.ApproveResolution(
                actor=SECRETARIAT,
                at=self._tick(),
                resolution_id=resolution_id,
                overridden=at_issue,
                override_reason="Taken up in the action plan" if at_issue else None,
            )
        )

    def sign(self, resolution_id: UUID) -> Commit | None:
        at = self._tick()
        return self.resolution(
            resolutions.SignResolution(
                actor=SECRETARIAT,
                at=at,
                resolution_id=resolution_id,
                signed_on=at.date(),
                signatories=(
                    resolutions.Signatory(
                        name="Chairperson NCSW", role="Chairperson", unit=Unit.NCSW
                    ),
                ),
            )
        )

    def adopt_plan(self, resolution_id: UUID) -> Commit | None:
        state = self.resolutions[resolution_id]
        at = self._tick()
        units = list(state.responsible_units) or [Unit.PUNJAB]
        actions = tuple(
            resolutions.Action(
                action_id=f"a{n}",
                unit=self.random.choice(units),
                description=f"Deliver part {n} of the resolution",
                due_on=(at + timedelta(days=self.random.randint(10, 100))).date(),
            )
            for n in range(1, self.random.randint(1, 4) + 1)
        )
        return self.resolution(
            resolutions.AdoptActionPlan(
                actor=SECRETARIAT,
                at=at,
                resolution_id=resolution_id,
                quarter=quarter_of((at + timedelta(days=20)).date()),
                actions=actions,
            )
        )

    def progress(
        self, resolution_id: UUID, action_id: str, status: resolutions.ProgressStatus
    ) -> Commit | None:
        state = self.resolutions[resolution_id]
        unit = state.actions[action_id].action.unit
        percent = {"completed": 100, "not_started": 0}.get(status.value, self.random.randint(5, 95))
        return self.resolution(
            resolutions.ReportProgress(
                actor=focal_person(unit),
                at=self._tick(6, 120),
                resolution_id=resolution_id,
                action_id=action_id,
                status=status,
                percent=percent,
                narrative=f"{status.value.replace('_', ' ')}: {percent} percent done",
            )
        )

    def close(self, resolution_id: UUID, outcome: resolutions.CloseOutcome) -> Commit | None:
        return self.resolution(
            resolutions.CloseResolution(
                actor=SECRETARIAT,
                at=self._tick(),
                resolution_id=resolution_id,
                outcome=outcome,
                reason="Decided by the group",
            )
        )

    # --- histories --------------------------------------------------------------------

    def story(self) -> list[Commit]:
        """A readable start: the November 2015 meeting and its resolutions through to
        progress, and a second meeting hosted by the next unit in the rotation."""
        commits: list[Commit | None] = []
        commits.append(self.schedule(Unit.AJK, date(2015, 11, 26), "16 Days of Activism"))
        first = next(reversed(self.meetings))
        self.clock = datetime(2015, 11, 26, 9, 0, tzinfo=UTC)
        commits.append(self.hold(first))
        areas = list(resolutions.PriorityArea)
        for n in range(3):
            units = PROVINCES[n : n + 3]
            commits.append(self.pass_resolution(first, areas[n], units))
            rid = next(reversed(self.resolutions))
            commits.append(self.circulate(rid, units))
            commits.append(self.feedback(rid, units[0], resolutions.Position.ENDORSE))
            commits.append(self.feedback(rid, units[1], resolutions.Position.AMEND))
            if n < 2:
                commits.append(self.approve(rid))
                commits.append(self.sign(rid))
                commits.append(self.adopt_plan(rid))
                actions = list(self.resolutions[rid].actions)
                commits.append(self.progress(rid, actions[0], resolutions.ProgressStatus.COMPLETED))
                if len(actions) > 1:
                    commits.append(
                        self.progress(rid, actions[1], resolutions.ProgressStatus.IN_PROGRESS)
                    )
        commits.append(self.schedule(Unit.PUNJAB, date(2016, 2, 25)))
        return [commit for commit in commits if commit is not None]

    def random_commits(self, count: int) -> list[Commit]:
        """``count`` accepted commands, chosen at random among what the state allows."""
        made: list[Commit] = []
        while len(made) < count:
            commit = self._random_step()
            if commit is not None:
                made.append(commit)
        return made

    def _random_step(self) -> Commit | None:
        pick = self.random.choice
        scheduled = [m for m, s in self.meetings.items() if s.status is MEETING_SCHEDULED]
        held = [m for m, s in self.meetings.items() if s.status is MEETING_HELD]
        by_status: dict[str, list[UUID]] = {}
        for rid, state in self.resolutions.items():
            if state.status is not None:
                by_status.setdefault(state.status.value, []).append(rid)
        soon = (self.clock + timedelta(days=20)).date()
        options: list[tuple[int, Callable[[], Commit | None]]] = []
        if len(scheduled) < 2:
            options.append((3, partial(self.schedule, pick(list(Unit)), soon)))
        if scheduled:
            options.append((4, partial(self.hold, pick(scheduled))))
            options.append((1, partial(self._cancel, pick(scheduled))))
        if held:
            area = pick(list(resolutions.PriorityArea))
            units = self.random.sample(PROVINCES, self.random.randint(1, 4))
            options.append((5, partial(self.pass_resolution, pick(held), area, units)))
        for rid in by_status.get("passed", []):
            units = self.random.sample(list(Unit), self.random.randint(2, 5))
            options.append((3, partial(self.circulate, rid, units)))
        for rid in by_status.get("circulated", []):
            unit = pick(list(self.resolutions[rid].participants))
            position = pick(list(resolutions.Position))
            options.append((6, partial(self.feedback, rid, unit, position)))
            options.append((2, partial(self.approve, rid)))
            options.append((1, partial(self.amend, rid)))
        for rid in by_status.get("approved", []):
            options.append((3, partial(self.sign, rid)))
        for rid in by_status.get("signed", []):
            options.append((3, partial(self.adopt_plan, rid)))
        for rid in by_status.get("action_plan_adopted", []):
            actions = self.resolutions[rid].actions
            open_actions = [a for a, s in actions.items() if s.status is not COMPLETED]
            if open_actions:
                status = pick(list(resolutions.ProgressStatus))
                options.append((4, partial(self.progress, rid, pick(open_actions), status)))
            options.append((1, partial(self.close, rid, resolutions.CloseOutcome.IMPLEMENTED)))
        if not options:
            return self.schedule(pick(list(Unit)), soon)
        _, step = self.random.choices(options, weights=[weight for weight, _ in options])[0]
        return step()

    def _cancel(self, meeting_id: UUID) -> Commit | None:
        return self.meeting(
            meetings.CancelMeeting(
                actor=SECRETARIAT, at=self._tick(), meeting_id=meeting_id, reason="Floods"
            )
        )


NOTIFIER = Actor.service("notifications")


def with_notifications(commits: list[Commit], seed: int = 3) -> list[Commit]:
    """The commits with what the notifications service would record after some of them: an
    invitation to the host for each meeting scheduled, a feedback request to each unit a
    resolution is circulated to (a third fail first and are sent in a second round), and a
    reminder to the first of them."""
    rng = random.Random(seed)
    merged: list[Commit] = []
    for commit in commits:
        merged.append(commit)
        for event in commit.events:
            for outcome, later in _notifications_of(event, commit, rng):
                merged.append(
                    Commit(
                        "notifications",
                        _notification_stream(outcome),
                        (outcome,),
                        NOTIFIER,
                        commit.at + later,
                        uuid5(NAMESPACE_URL, f"ipmg:notify/{len(merged)}"),
                    )
                )
    return merged


def _notification_stream(event: DomainEvent) -> str:
    if isinstance(event, notify.ReminderIssued):
        kind, unit = event.reminder_kind.value, event.unit.value
        return f"reminder-{kind}-{event.entity}-{unit}-{event.due_on}"
    return f"notification-{getattr(event, 'delivery_id')}"  # noqa: B009


def _notifications_of(
    event: DomainEvent, commit: Commit, rng: random.Random
) -> Iterator[tuple[DomainEvent, timedelta]]:
    cause = {
        "cause_event_id": uuid5(NAMESPACE_URL, f"ipmg:{commit.stream_id}/{event.event_type}"),
        "cause_type": event.event_type,
        "cause_source": commit.source,
        "channel": notify.Channel.EMAIL,
        "attempts": 1,
    }
    if isinstance(event, m.MeetingScheduled):
        unit = event.host_unit
        yield (
            notify.NotificationSent(
                delivery_id=uuid5(NAMESPACE_URL, f"ipmg:invite/{event.meeting_id}"),
                kind=notify.NotificationKind.INVITATION,
                unit=unit,
                person=f"Focal person {unit.value}",
                address=f"focal@{unit.value}.gov.pk",
                subject=f"IPMG meeting on {event.scheduled_for} at {event.venue}",
                **cause,
            ),
            timedelta(minutes=1),
        )
    elif isinstance(event, r.ResolutionCirculated):
        for index, unit in enumerate(event.participants):
            delivery = uuid5(
                NAMESPACE_URL, f"ipmg:request/{event.resolution_id}/{unit}/{rng.random()}"
            )
            details = {
                "delivery_id": delivery,
                "kind": notify.NotificationKind.FEEDBACK_REQUEST,
                "unit": unit,
                "person": None,
                "address": f"https://{unit.value}.gov.pk/ipmg",
                "subject": "A resolution awaits your feedback",
                **cause,
                "channel": notify.Channel.WEBHOOK,
            }
            if rng.random() < 0.33:
                failed = notify.NotificationFailed(**{**details, "attempts": 3}, error="timed out")
                yield failed, timedelta(minutes=2)
            yield notify.NotificationSent(**details), timedelta(minutes=30)
            if index == 0:
                yield (
                    notify.ReminderIssued(
                        reminder_kind=notify.ReminderKind.FEEDBACK_DUE,
                        entity=str(event.resolution_id),
                        unit=unit,
                        due_on=event.feedback_due,
                        resolution_id=event.resolution_id,
                        action_id=None,
                        quarter=None,
                    ),
                    timedelta(days=5),
                )


def sample_history(seed: int = 7, random_commits: int = 60) -> list[Commit]:
    writer = HistoryWriter(seed=seed)
    return [*writer.story(), *writer.random_commits(random_commits)]


def envelopes_of(commits: list[Commit]) -> list[Envelope]:
    """The envelopes the write services' stores would record for these commits, in order
    (positions per source, versions per stream, hash chain; recorded when they occurred)."""
    positions: dict[str, int] = {}
    heads: dict[str, str] = {}
    versions: dict[str, int] = {}
    made: list[Envelope] = []
    for commit in commits:
        for event in commit.events:
            position = positions[commit.source] = positions.get(commit.source, 0) + 1
            version = versions[commit.stream_id] = versions.get(commit.stream_id, 0) + 1
            fields = {
                "event_id": str(uuid5(NAMESPACE_URL, f"ipmg:{commit.stream_id}/{version}")),
                "type": event.event_type,
                "schema_version": event.schema_version,
                "source": commit.source,
                "stream_id": commit.stream_id,
                "stream_version": version,
                "position": position,
                "occurred_at": format_instant(commit.at),
                "recorded_at": format_instant(commit.at),
                "actor": commit.actor.model_dump(mode="json"),
                "correlation_id": str(commit.correlation_id),
                "causation_id": None,
                "payload": event.model_dump(mode="json"),
                "prev_hash": heads.get(commit.source, GENESIS_HASH),
            }
            fields["hash"] = heads[commit.source] = hash_event_fields(fields)
            made.append(Envelope.model_validate(fields))
    return made


def by_source(envelopes: list[Envelope]) -> dict[str, list[Envelope]]:
    split: dict[str, list[Envelope]] = {}
    for envelope in envelopes:
        split.setdefault(envelope.source, []).append(envelope)
    return split


def interleavings(envelopes: list[Envelope], rng: random.Random) -> Iterator[Envelope]:
    """The envelopes with each source kept in order and the sources shuffled together."""
    queues = {source: list(reversed(items)) for source, items in by_source(envelopes).items()}
    while queues:
        source = rng.choice(sorted(queues))
        yield queues[source].pop()
        if not queues[source]:
            del queues[source]


class LogBuilder:
    """Events written by hand, each at a chosen instant (for exact expectations)."""

    def __init__(self) -> None:
        self.commits: list[Commit] = []

    def add(self, event: DomainEvent, at: datetime, actor: Actor = SECRETARIAT) -> LogBuilder:
        if isinstance(event, (notify.NotificationSent, notify.NotificationFailed)):
            source, stream = "notifications", f"notification-{event.delivery_id}"
        elif isinstance(event, notify.ReminderIssued):
            source, stream = "notifications", _notification_stream(event)
        else:
            entity = getattr(event, "resolution_id", None) or getattr(event, "meeting_id")  # noqa: B009
            source = "resolutions" if hasattr(event, "resolution_id") else "meetings"
            stream = f"{source[:-1]}-{entity}"
        correlation = uuid5(NAMESPACE_URL, f"ipmg:commit/{len(self.commits)}")
        self.commits.append(Commit(source, stream, (event,), actor, at, correlation))
        return self

    def envelopes(self) -> list[Envelope]:
        return envelopes_of(self.commits)


# --- one scripted lifecycle, with exact times -------------------------------------------

MEETING = UUID("00000000-0000-4000-8000-000000000001")
RESOLUTION = UUID("00000000-0000-4000-8000-0000000000a1")
NOV_26 = datetime(2015, 11, 26, 10, 0, tzinfo=UTC)


def at(day: int, month: int = 12, year: int = 2015, hour: int = 10) -> datetime:
    return datetime(year, month, day, hour, 0, tzinfo=UTC)


def lifecycle() -> LogBuilder:
    """A meeting and one resolution through amendment, re-circulation, signature, plan and
    progress, each event at a fixed instant."""
    attendees = (
        m.Attendee(name="Chairperson", role="Chairperson, NCSW", unit=Unit.NCSW),
        m.Attendee(name="Minister WDD", role="Minister", unit=Unit.AJK),
        m.Attendee(name="Secretary WDD", role="Secretary", unit=Unit.AJK),
        m.Attendee(name="Secretary WDD", role="Secretary", unit=Unit.PUNJAB),
    )
    log = LogBuilder()
    log.add(
        m.MeetingScheduled(
            meeting_id=MEETING,
            scheduled_for=date(2015, 11, 26),
            host_unit=Unit.AJK,
            venue="Muzaffarabad",
            occasion="16 Days of Activism",
        ),
        at(2, 11),
    )
    log.add(
        m.MeetingHeld(
            meeting_id=MEETING,
            held_on=date(2015, 11, 26),
            host_unit=Unit.AJK,
            venue="Muzaffarabad",
            occasion="16 Days of Activism",
            attendees=attendees,
            agenda=("CEDAW",),
        ),
        NOV_26,
    )
    log.add(
        r.ResolutionPassed(
            resolution_id=RESOLUTION,
            meeting_id=MEETING,
            passed_on=date(2015, 11, 26),
            number=1,
            title="Independent WDDs",
            text="Each province makes its WDD independent.",
            priority_area=r.PriorityArea.INDEPENDENT_WDDS,
            commitments=(r.Commitment(instrument="CEDAW", detail=None),),
            responsible_units=(Unit.PUNJAB, Unit.SINDH),
        ),
        at(26, 11, hour=12),
    )
    log.add(
        r.ResolutionCirculated(
            resolution_id=RESOLUTION,
            participants=(Unit.PUNJAB, Unit.SINDH),
            feedback_due=date(2015, 12, 10),
        ),
        at(1),
    )
    log.add(
        r.FeedbackReceived(
            resolution_id=RESOLUTION,
            unit=Unit.PUNJAB,
            person="Secretary WDD Punjab",
            position=r.Position.AMEND,
            comments="Add a timeline",
        ),
        at(3),
        focal_person(Unit.PUNJAB),
    )
    log.add(
        r.ResolutionAmended(
            resolution_id=RESOLUTION,
            title="Independent WDDs by June",
            text="Each province makes its WDD independent by June.",
            reason="Punjab's feedback",
        ),
        at(4),
    )
    log.add(
        r.ResolutionCirculated(
            resolution_id=RESOLUTION,
            participants=(Unit.PUNJAB, Unit.SINDH),
            feedback_due=date(2015, 12, 20),
        ),
        at(5),
    )
    log.add(
        r.FeedbackReceived(
            resolution_id=RESOLUTION,
            unit=Unit.SINDH,
            person="Secretary WDD Sindh",
            position=r.Position.ENDORSE,
            comments=None,
        ),
        at(7),
        focal_person(Unit.SINDH),
    )
    log.add(r.ResolutionApproved(resolution_id=RESOLUTION), at(12))
    log.add(
        r.ResolutionSigned(
            resolution_id=RESOLUTION,
            signed_on=date(2015, 12, 14),
            signatories=(r.Signatory(name="Chairperson", role="Chairperson", unit=Unit.NCSW),),
        ),
        at(14),
    )
    log.add(
        r.ActionPlanAdopted(
            resolution_id=RESOLUTION,
            quarter="2016-Q1",
            actions=(
                r.Action(
                    action_id="a1",
                    unit=Unit.PUNJAB,
                    description="Draft the bill",
                    due_on=date(2016, 2, 1),
                ),
                r.Action(
                    action_id="a2",
                    unit=Unit.SINDH,
                    description="Notify the department",
                    due_on=date(2016, 3, 1),
                ),
            ),
        ),
        at(20),
    )
    log.add(
        r.ProgressReported(
            resolution_id=RESOLUTION,
            action_id="a1",
            unit=Unit.PUNJAB,
            status=r.ProgressStatus.IN_PROGRESS,
            percent=40,
            narrative="Draft with the law department",
            evidence=(),
        ),
        at(10, 1, 2016),
        focal_person(Unit.PUNJAB),
    )
    log.add(
        r.ProgressReported(
            resolution_id=RESOLUTION,
            action_id="a1",
            unit=Unit.PUNJAB,
            status=r.ProgressStatus.COMPLETED,
            percent=100,
            narrative="Bill tabled",
            evidence=("assembly-order-12",),
        ),
        at(28, 1, 2016),
        focal_person(Unit.PUNJAB),
    )
    return log
