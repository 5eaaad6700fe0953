"""Random command sequences, valid and invalid, from random actors, through one resolution.

After every step the state folded so far must satisfy the lifecycle's invariants, a refused
command must leave everything as it was, and folding all accepted events from scratch must
give the current state.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import TypeVar
from uuid import UUID

from hypothesis import event as note_outcome
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ipmg_contracts.resolutions import ActionWaiver, RoundClosedBy
from ipmg_resolutions.domain import (
    Action,
    ActionPlanAdopted,
    AdoptActionPlan,
    AmendResolution,
    ApproveResolution,
    CirculateResolution,
    CloseOutcome,
    CloseResolution,
    FeedbackReceived,
    GiveFeedback,
    HeldMeetingFacts,
    MeetingStatus,
    PassResolution,
    Position,
    PriorityArea,
    ProgressReported,
    ProgressStatus,
    ReportProgress,
    ResolutionApproved,
    ResolutionCirculated,
    ResolutionClosed,
    ResolutionCommand,
    ResolutionSigned,
    ResolutionState,
    ResolutionStatus,
    Signatory,
    SignResolution,
    decide,
    evolve,
    fold,
)
from ipmg_shared.actors import Actor, Role, Unit
from ipmg_shared.domain import CommandRefused
from ipmg_shared.events import DomainEvent

E = TypeVar("E", bound=DomainEvent)

RESOLUTION = UUID("00000000-0000-4000-8000-0000000000a1")
SUCCESSOR = UUID("00000000-0000-4000-8000-0000000000a2")
MEETING = UUID("00000000-0000-4000-8000-000000000001")
AT = datetime(2015, 12, 1, 9, 0, tzinfo=UTC)
AFTER_FEEDBACK_DUE = datetime(2015, 12, 16, 9, 0, tzinfo=UTC)
SECRETARIAT = Actor(subject="staff:1", unit=Unit.NCSW, role=Role.SECRETARIAT)
HELD_MEETING = HeldMeetingFacts(
    meeting_id=MEETING, status=MeetingStatus.HELD, held_on=date(2015, 11, 26), host_unit=Unit.AJK
)

# The secretariat is listed several times so that random sequences get deep into the
# lifecycle; everyone else is there to be refused, or accepted for their own unit.
ACTORS = [
    *[SECRETARIAT] * 6,
    *[Actor(subject=f"focal:{unit}", unit=unit, role=Role.FOCAL_PERSON) for unit in Unit],
    Actor(subject="auditor:1", unit=Unit.NCSW, role=Role.AUDITOR),
    Actor.service("reminders"),
    Actor(subject="staff:sindh", unit=Unit.SINDH, role=Role.SECRETARIAT),
]
STATUS_ORDER = [None, *ResolutionStatus]
ACTION_IDS = ["a1", "a2", "a3"]  # a small set, so progress often names an adopted action

actors = st.sampled_from(ACTORS)
units = st.sampled_from(Unit)
distinct_units = st.lists(units, min_size=1, max_size=len(Unit), unique=True).map(tuple)
meetings = st.sampled_from(
    [
        HELD_MEETING,
        HELD_MEETING,
        HeldMeetingFacts(meeting_id=MEETING, status=MeetingStatus.SCHEDULED),
        HeldMeetingFacts(meeting_id=MEETING, status=MeetingStatus.CANCELLED),
        None,
    ]
)
action_plans = st.lists(
    st.builds(
        Action,
        action_id=st.sampled_from(ACTION_IDS),
        unit=units,
        description=st.just("Table the bill"),
        due_on=st.just(date(2016, 3, 31)),
    ),
    min_size=1,
    max_size=len(ACTION_IDS),
    unique_by=lambda action: action.action_id,
).map(tuple)


def speakers_for(unit: Unit) -> st.SearchStrategy[Actor]:
    """Anyone at all, but often someone entitled to speak for ``unit``."""
    own_focal_person = Actor(subject=f"focal:{unit}", unit=unit, role=Role.FOCAL_PERSON)
    return st.sampled_from([SECRETARIAT, own_focal_person]) | actors


amendments = st.sampled_from(
    [("Independent WDDs", None), (None, "Enact a law"), ("Autonomous WDDs", "Enact a law")]
)


def passing(
    actor: Actor, meeting: HeldMeetingFacts | None, units: tuple[Unit, ...]
) -> PassResolution:
    return PassResolution(
        actor=actor,
        at=AT,
        resolution_id=RESOLUTION,
        meeting_id=MEETING,
        meeting=meeting,
        number=1,
        title="Independent WDDs",
        text="Each unit will table a bill.",
        priority_area=PriorityArea.INDEPENDENT_WDDS,
        responsible_units=units,
    )


def circulation(actor: Actor, participants: tuple[Unit, ...]) -> CirculateResolution:
    return CirculateResolution(
        actor=actor,
        at=AT,
        resolution_id=RESOLUTION,
        participants=participants,
        feedback_due=date(2015, 12, 15),
    )


def approval(
    actor: Actor,
    at: datetime = AFTER_FEEDBACK_DUE,
    overridden: tuple[Unit, ...] = (),
    reason: str | None = None,
) -> ApproveResolution:
    return ApproveResolution(
        actor=actor,
        at=at,
        resolution_id=RESOLUTION,
        overridden=overridden,
        override_reason=reason,
    )


def signature(actor: Actor, unit: Unit) -> SignResolution:
    return SignResolution(
        actor=actor,
        at=AT,
        resolution_id=RESOLUTION,
        signed_on=date(2015, 11, 30),
        signatories=(Signatory(name="Minister WDD", role="Minister", unit=unit),),
    )


def adoption(actor: Actor, actions: tuple[Action, ...]) -> AdoptActionPlan:
    return AdoptActionPlan(
        actor=actor, at=AT, resolution_id=RESOLUTION, quarter="2016-Q1", actions=actions
    )


@settings(max_examples=75, stateful_step_count=30, deadline=None)
class ResolutionLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = ResolutionState.initial()
        self.history: list[DomainEvent] = []
        self.highest_status_seen = 0

    def run(self, command: ResolutionCommand) -> None:
        before = self.state.model_copy(deep=True)
        try:
            events = decide(command, self.state)
        except CommandRefused as refusal:
            note_outcome(f"refused: {refusal.rule}")
            assert self.state == before
            assert len(self.history) == before.version
            return
        assert events, "an accepted command produces events; a refused one raises"
        note_outcome(f"accepted: {type(command).__name__}")
        for event in events:
            assert_authorised(command.actor, event)
            self.state = evolve(self.state, event)
        self.history.extend(events)

    @initialize(
        # Circulated (depth 2) weighs more: feedback and approval happen there.
        depth=st.sampled_from([0, 1, 2, 2, 2, 3, 4, 5]),
        participants=distinct_units,
        unit=units,
        actions=action_plans,
    )
    def start_somewhere_in_the_lifecycle(
        self, depth: int, participants: tuple[Unit, ...], unit: Unit, actions: tuple[Action, ...]
    ) -> None:
        # Random commands rarely walk the whole lifecycle, so each run first takes the
        # secretariat's happy path to a random depth (empty stream up to an adopted plan).
        happy_path: list[ResolutionCommand] = [
            passing(SECRETARIAT, HELD_MEETING, participants),
            circulation(SECRETARIAT, participants),
            approval(SECRETARIAT),
            signature(SECRETARIAT, unit),
            adoption(SECRETARIAT, actions),
        ]
        for command in happy_path[:depth]:
            self.run(command)
        assert self.state.version == depth, "the happy path is never refused"

    @rule(actor=actors, meeting=meetings, units=distinct_units)
    def pass_resolution(
        self, actor: Actor, meeting: HeldMeetingFacts | None, units: tuple[Unit, ...]
    ) -> None:
        self.run(passing(actor, meeting, units))

    @rule(actor=actors, participants=distinct_units)
    def circulate(self, actor: Actor, participants: tuple[Unit, ...]) -> None:
        self.run(circulation(actor, participants))

    @rule(data=st.data(), position=st.sampled_from(Position))
    def give_feedback(self, data: st.DataObject, position: Position) -> None:
        unit = data.draw(st.sampled_from([*self.state.participants, *Unit]))
        actor = data.draw(speakers_for(unit))
        self.run(
            GiveFeedback(
                actor=actor,
                at=AT,
                resolution_id=RESOLUTION,
                unit=unit,
                person="Minister WDD",
                position=position,
            )
        )

    @rule(actor=actors, amendment=amendments)
    def amend(self, actor: Actor, amendment: tuple[str | None, str | None]) -> None:
        title, text = amendment
        self.run(
            AmendResolution(
                actor=actor,
                at=AT,
                resolution_id=RESOLUTION,
                title=title,
                text=text,
                reason="Feedback from the units",
            )
        )

    @precondition(lambda self: self.state.status is ResolutionStatus.CIRCULATED)
    @rule(data=st.data(), position=st.sampled_from(Position))
    def a_participant_answers(self, data: st.DataObject, position: Position) -> None:
        # Often enough that approval meets rounds with amend and object positions in them.
        unit = data.draw(st.sampled_from(self.state.participants))
        self.run(
            GiveFeedback(
                actor=SECRETARIAT,
                at=AT,
                resolution_id=RESOLUTION,
                unit=unit,
                person="Minister WDD",
                position=position,
            )
        )

    @rule(
        data=st.data(),
        actor=actors,
        late=st.booleans(),
        reason=st.sampled_from([None, "Raised again at the next meeting"]),
    )
    def approve(self, data: st.DataObject, actor: Actor, late: bool, reason: str | None) -> None:
        at_issue = tuple(
            unit
            for unit, current in self.state.positions.items()
            if current.position is not Position.ENDORSE
        )
        overridden = data.draw(
            st.sampled_from([(), at_issue, at_issue[1:]])
            | st.lists(units, unique=True, max_size=3).map(tuple)
        )
        self.run(approval(actor, AFTER_FEEDBACK_DUE if late else AT, overridden, reason))

    @rule(actor=actors, unit=units)
    def sign(self, actor: Actor, unit: Unit) -> None:
        self.run(signature(actor, unit))

    @rule(actor=actors, actions=action_plans)
    def adopt_action_plan(self, actor: Actor, actions: tuple[Action, ...]) -> None:
        self.run(adoption(actor, actions))

    @rule(data=st.data(), status=st.sampled_from(ProgressStatus), percent=st.integers(0, 100))
    def report_progress(self, data: st.DataObject, status: ProgressStatus, percent: int) -> None:
        action_id = data.draw(st.sampled_from([*self.state.actions, *ACTION_IDS, "a9"]))
        adopted = self.state.actions.get(action_id)
        actor = data.draw(speakers_for(adopted.action.unit) if adopted else actors)
        self.run(
            ReportProgress(
                actor=actor,
                at=AT,
                resolution_id=RESOLUTION,
                action_id=action_id,
                status=status,
                percent=100 if status is ProgressStatus.COMPLETED else percent,
                narrative="Drafting",
            )
        )

    @rule(
        data=st.data(),
        actor=actors,
        outcome=st.sampled_from(CloseOutcome),
        successor_exists=st.booleans(),
    )
    def close(
        self, data: st.DataObject, actor: Actor, outcome: CloseOutcome, successor_exists: bool
    ) -> None:
        open_actions = [
            action_id
            for action_id, action in self.state.actions.items()
            if action.status is not ProgressStatus.COMPLETED
        ]
        waived_ids = data.draw(
            st.sampled_from([(), tuple(open_actions), tuple(open_actions[1:])])
            | st.lists(st.sampled_from(ACTION_IDS), unique=True, max_size=2).map(tuple)
        )
        self.run(
            CloseResolution(
                actor=actor,
                at=AT,
                resolution_id=RESOLUTION,
                outcome=outcome,
                reason="Decided by the group",
                superseded_by=SUCCESSOR if outcome is CloseOutcome.SUPERSEDED else None,
                successor_exists=successor_exists,
                waived=tuple(ActionWaiver(action_id=a, reason="Overtaken") for a in waived_ids),
            )
        )

    @invariant()
    def version_counts_the_accepted_events(self) -> None:
        assert self.state.version == len(self.history)

    @invariant()
    def folding_the_history_gives_the_state(self) -> None:
        assert fold(self.history) == self.state

    @invariant()
    def status_never_goes_back(self) -> None:
        rank = STATUS_ORDER.index(self.state.status)
        assert rank >= self.highest_status_seen
        self.highest_status_seen = rank

    @invariant()
    def feedback_only_from_participants(self) -> None:
        assert set(self.state.positions) <= set(self.state.participants)
        for feedback, earlier in self.with_earlier(FeedbackReceived):
            circulations = of_class(earlier, ResolutionCirculated)
            assert circulations
            assert feedback.unit in circulations[-1].participants

    @invariant()
    def approval_only_after_circulation(self) -> None:
        for _, earlier in self.with_earlier(ResolutionApproved):
            assert of_class(earlier, ResolutionCirculated)

    @invariant()
    def approval_only_on_a_closed_round_with_no_unheard_objection(self) -> None:
        for approved, earlier in self.with_earlier(ResolutionApproved):
            assert approved.basis is not None
            last_circulation = max(
                i for i, e in enumerate(earlier) if isinstance(e, ResolutionCirculated)
            )
            circulated = earlier[last_circulation]
            assert isinstance(circulated, ResolutionCirculated)
            positions = {
                e.unit: e.position for e in of_class(earlier[last_circulation:], FeedbackReceived)
            }
            at_issue = {u for u, p in positions.items() if p is not Position.ENDORSE}
            assert at_issue == set(approved.basis.overridden)
            assert not approved.basis.overridden or approved.basis.override_reason
            unanswered = set(circulated.participants) - set(positions)
            assert unanswered == set(approved.basis.unanswered)
            if approved.basis.closed_by is RoundClosedBy.ALL_ANSWERED:
                assert not unanswered

    @invariant()
    def implemented_only_with_every_action_completed_or_waived(self) -> None:
        for closed, earlier in self.with_earlier(ResolutionClosed):
            if closed.outcome is not CloseOutcome.IMPLEMENTED:
                continue
            planned = {a.action_id for p in of_class(earlier, ActionPlanAdopted) for a in p.actions}
            completed = {
                r.action_id
                for r in of_class(earlier, ProgressReported)
                if r.status is ProgressStatus.COMPLETED
            }
            assert planned <= completed | {waiver.action_id for waiver in closed.waived}

    @invariant()
    def signatories_only_after_approval(self) -> None:
        if self.state.signatories:
            assert self.state.status in (
                ResolutionStatus.SIGNED,
                ResolutionStatus.ACTION_PLAN_ADOPTED,
                ResolutionStatus.CLOSED,
            )
        for _, earlier in self.with_earlier(ResolutionSigned):
            assert of_class(earlier, ResolutionApproved)

    @invariant()
    def progress_only_on_adopted_actions(self) -> None:
        for report, earlier in self.with_earlier(ProgressReported):
            adopted = {
                a.action_id for plan in of_class(earlier, ActionPlanAdopted) for a in plan.actions
            }
            assert report.action_id in adopted
            completed_before = {
                r.action_id
                for r in of_class(earlier, ProgressReported)
                if r.status is ProgressStatus.COMPLETED
            }
            assert report.action_id not in completed_before
        for action in self.state.actions.values():
            if action.status is ProgressStatus.COMPLETED:
                assert action.percent == 100

    def with_earlier(self, event_class: type[E]) -> Iterator[tuple[E, list[DomainEvent]]]:
        """Each accepted event of ``event_class`` with the events accepted before it."""
        for index, event in enumerate(self.history):
            if isinstance(event, event_class):
                yield event, self.history[:index]


def of_class(events: list[DomainEvent], event_class: type[E]) -> list[E]:
    return [event for event in events if isinstance(event, event_class)]


def assert_authorised(actor: Actor, event: DomainEvent) -> None:
    """Only the secretariat acts, except a focal person speaking for their own unit."""
    if actor.is_secretariat:
        return
    assert isinstance(event, FeedbackReceived | ProgressReported)
    assert actor.role is Role.FOCAL_PERSON
    assert actor.unit is event.unit


TestResolutionLifecycle = ResolutionLifecycle.TestCase
