"""Given past resolution events, when a command is decided, then these events or this refusal."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from ipmg_contracts.resolutions import ApprovalBasis, RoundClosedBy
from ipmg_resolutions.domain import (
    Action,
    ActionPlanAdopted,
    AdoptActionPlan,
    AmendResolution,
    ApproveResolution,
    CirculateResolution,
    CloseOutcome,
    CloseResolution,
    Commitment,
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
    ResolutionAmended,
    ResolutionApproved,
    ResolutionCirculated,
    ResolutionClosed,
    ResolutionCommand,
    ResolutionPassed,
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
from ipmg_shared.domain import CommandRefused, NotAuthorised, NotFound
from ipmg_shared.events import DomainEvent

RESOLUTION = UUID("00000000-0000-4000-8000-0000000000a1")
SUCCESSOR = UUID("00000000-0000-4000-8000-0000000000a2")
MEETING = UUID("00000000-0000-4000-8000-000000000001")
AT = datetime(2015, 12, 1, 9, 0, tzinfo=UTC)
HELD_ON = date(2015, 11, 26)
AFTER_FEEDBACK_DUE = datetime(2015, 12, 16, 9, 0, tzinfo=UTC)

SECRETARIAT = Actor(subject="staff:1", unit=Unit.NCSW, role=Role.SECRETARIAT)
AUDITOR = Actor(subject="auditor:1", unit=Unit.NCSW, role=Role.AUDITOR)


def focal_person(unit: Unit) -> Actor:
    return Actor(subject=f"focal:{unit}", unit=unit, role=Role.FOCAL_PERSON)


HELD_MEETING = HeldMeetingFacts(
    meeting_id=MEETING, status=MeetingStatus.HELD, held_on=HELD_ON, host_unit=Unit.AJK
)
COMMITMENT = Commitment(instrument="CEDAW", detail="Article 7: political and public life")
TEXT = "Each unit will table a bill establishing an independent WDD."
ACTIONS = (
    Action(
        action_id="a1", unit=Unit.PUNJAB, description="Draft the bill", due_on=date(2016, 3, 31)
    ),
    Action(action_id="a2", unit=Unit.SINDH, description="Draft the bill", due_on=date(2016, 3, 31)),
)
SIGNATORIES = (
    Signatory(name="Chairperson", role="Chairperson, NCSW", unit=Unit.NCSW),
    Signatory(name="Minister WDD", role="Minister, Women Development", unit=Unit.PUNJAB),
)

PASSED = ResolutionPassed(
    resolution_id=RESOLUTION,
    meeting_id=MEETING,
    passed_on=HELD_ON,
    number=1,
    title="Independent WDDs",
    text=TEXT,
    priority_area=PriorityArea.INDEPENDENT_WDDS,
    commitments=(COMMITMENT,),
    responsible_units=(Unit.PUNJAB, Unit.SINDH),
)
CIRCULATED = ResolutionCirculated(
    resolution_id=RESOLUTION,
    participants=(Unit.PUNJAB, Unit.SINDH, Unit.AJK),
    feedback_due=date(2015, 12, 15),
)
PUNJAB_ENDORSES = FeedbackReceived(
    resolution_id=RESOLUTION,
    unit=Unit.PUNJAB,
    person="Minister WDD Punjab",
    position=Position.ENDORSE,
    comments=None,
)
APPROVED = ResolutionApproved(
    resolution_id=RESOLUTION,
    basis=ApprovalBasis(
        closed_by=RoundClosedBy.DUE_DATE_PASSED, unanswered=(Unit.PUNJAB, Unit.SINDH, Unit.AJK)
    ),
)
SIGNED = ResolutionSigned(
    resolution_id=RESOLUTION, signed_on=date(2016, 1, 5), signatories=SIGNATORIES
)
ADOPTED = ActionPlanAdopted(resolution_id=RESOLUTION, quarter="2016-Q1", actions=ACTIONS)
A1_COMPLETED = ProgressReported(
    resolution_id=RESOLUTION,
    action_id="a1",
    unit=Unit.PUNJAB,
    status=ProgressStatus.COMPLETED,
    percent=100,
    narrative="The bill was tabled.",
    evidence=(),
)
WITHDRAWN = ResolutionClosed(
    resolution_id=RESOLUTION, outcome=CloseOutcome.WITHDRAWN, reason="Overtaken", superseded_by=None
)

UP_TO_PASSED: tuple[DomainEvent, ...] = (PASSED,)
UP_TO_CIRCULATED = (*UP_TO_PASSED, CIRCULATED)
UP_TO_APPROVED = (*UP_TO_CIRCULATED, APPROVED)
UP_TO_SIGNED = (*UP_TO_APPROVED, SIGNED)
UP_TO_ADOPTED = (*UP_TO_SIGNED, ADOPTED)
OPEN_HISTORIES = {
    "passed": UP_TO_PASSED,
    "circulated": UP_TO_CIRCULATED,
    "approved": UP_TO_APPROVED,
    "signed": UP_TO_SIGNED,
    "action_plan_adopted": UP_TO_ADOPTED,
}


def _fields(fields: dict[str, Any]) -> dict[str, Any]:
    return {"actor": SECRETARIAT, "at": AT, "resolution_id": RESOLUTION} | fields


def pass_(**fields: Any) -> PassResolution:
    values = {
        "meeting_id": MEETING,
        "meeting": HELD_MEETING,
        "number": 1,
        "title": "Independent WDDs",
        "text": TEXT,
        "priority_area": PriorityArea.INDEPENDENT_WDDS,
        "commitments": (COMMITMENT,),
        "responsible_units": (Unit.PUNJAB, Unit.SINDH),
    }
    return PassResolution(**_fields(values | fields))


def circulate(**fields: Any) -> CirculateResolution:
    values = {
        "participants": (Unit.PUNJAB, Unit.SINDH, Unit.AJK),
        "feedback_due": date(2015, 12, 15),
    }
    return CirculateResolution(**_fields(values | fields))


def feedback(**fields: Any) -> GiveFeedback:
    values = {
        "actor": focal_person(Unit.PUNJAB),
        "unit": Unit.PUNJAB,
        "person": "Minister WDD Punjab",
        "position": Position.ENDORSE,
    }
    return GiveFeedback(**_fields(values | fields))


def amend(**fields: Any) -> AmendResolution:
    values = {"text": "Each unit will enact a law.", "reason": "Sindh asked for stronger wording"}
    return AmendResolution(**_fields(values | fields))


def approve(**fields: Any) -> ApproveResolution:
    values = {"at": AFTER_FEEDBACK_DUE}
    return ApproveResolution(**_fields(values | fields))


def sign(**fields: Any) -> SignResolution:
    values = {
        "signed_on": date(2016, 1, 5),
        "signatories": SIGNATORIES,
        "at": datetime(2016, 1, 5, 9, 0, tzinfo=UTC),  # signed_on is a past fact
    }
    return SignResolution(**_fields(values | fields))


def adopt(**fields: Any) -> AdoptActionPlan:
    return AdoptActionPlan(**_fields({"quarter": "2016-Q1", "actions": ACTIONS} | fields))


def progress(**fields: Any) -> ReportProgress:
    values = {
        "actor": focal_person(Unit.PUNJAB),
        "action_id": "a1",
        "status": ProgressStatus.IN_PROGRESS,
        "percent": 40,
        "narrative": "The draft is with the law department.",
        "evidence": ("letter no. 12/2016",),
    }
    return ReportProgress(**_fields(values | fields))


def close(**fields: Any) -> CloseResolution:
    values = {"outcome": CloseOutcome.WITHDRAWN, "reason": "Overtaken"}
    return CloseResolution(**_fields(values | fields))


def refusal(command: ResolutionCommand, *given: DomainEvent) -> CommandRefused:
    with pytest.raises(CommandRefused) as refused:
        decide(command, fold(given))
    return refused.value


# --- passing ------------------------------------------------------------------------------


def test_a_resolution_is_passed_at_a_held_meeting() -> None:
    events = decide(pass_(), fold([]))

    assert events == [PASSED]
    state = fold(events)
    assert state.status is ResolutionStatus.PASSED
    assert state.passed_on == HELD_ON


def test_a_meeting_unknown_to_the_service_refuses_the_resolution() -> None:
    assert refusal(pass_(meeting=None)).rule == "resolution.pass.meeting_unknown"


@pytest.mark.parametrize("status", [MeetingStatus.SCHEDULED, MeetingStatus.CANCELLED])
def test_a_resolution_is_passed_only_at_a_held_meeting(status: MeetingStatus) -> None:
    meeting = HeldMeetingFacts(meeting_id=MEETING, status=status)
    assert refusal(pass_(meeting=meeting)).rule == "resolution.pass.meeting_not_held"


def test_a_resolution_is_passed_once() -> None:
    assert refusal(pass_(), PASSED).rule == "resolution.pass.already_passed"


@pytest.mark.parametrize("units", [(), (Unit.SINDH, Unit.SINDH)], ids=["none", "repeated"])
def test_responsible_units_are_distinct_and_at_least_one(units: tuple[Unit, ...]) -> None:
    with pytest.raises(ValidationError):
        pass_(responsible_units=units)


def test_meeting_facts_must_be_about_the_meeting_named() -> None:
    other = HELD_MEETING.model_copy(update={"meeting_id": SUCCESSOR})
    with pytest.raises(ValidationError):
        pass_(meeting=other)


def test_facts_of_a_held_meeting_carry_its_date_and_host() -> None:
    with pytest.raises(ValidationError):
        HeldMeetingFacts(meeting_id=MEETING, status=MeetingStatus.HELD)


def test_an_unknown_priority_area_is_rejected() -> None:
    with pytest.raises(ValidationError):
        pass_(priority_area="sports")


# --- circulating --------------------------------------------------------------------------


def test_a_passed_resolution_is_circulated() -> None:
    events = decide(circulate(), fold(UP_TO_PASSED))

    assert events == [CIRCULATED]
    state = fold([*UP_TO_PASSED, *events])
    assert state.status is ResolutionStatus.CIRCULATED
    assert state.participants == (Unit.PUNJAB, Unit.SINDH, Unit.AJK)
    assert state.circulation_round == 1


def test_recirculation_replaces_participants_and_due_date_and_opens_a_new_round() -> None:
    given = [*UP_TO_CIRCULATED, PUNJAB_ENDORSES]
    again = circulate(participants=(Unit.SINDH, Unit.BALOCHISTAN), feedback_due=date(2016, 1, 5))

    events = decide(again, fold(given))

    state = fold([*given, *events])
    assert state.participants == (Unit.SINDH, Unit.BALOCHISTAN)
    assert state.feedback_due == date(2016, 1, 5)
    assert state.circulation_round == 2
    assert state.positions == {}


@pytest.mark.parametrize("history", ["approved", "signed", "action_plan_adopted"])
def test_a_resolution_is_circulated_only_before_approval(history: str) -> None:
    refused = refusal(circulate(), *OPEN_HISTORIES[history])
    assert refused.rule == "resolution.circulate.already_approved"


def test_a_circulation_has_participants() -> None:
    with pytest.raises(ValidationError):
        circulate(participants=())


# --- feedback -----------------------------------------------------------------------------


def test_a_participants_focal_person_gives_feedback_for_their_unit() -> None:
    events = decide(feedback(), fold(UP_TO_CIRCULATED))

    assert events == [PUNJAB_ENDORSES]
    position = fold([*UP_TO_CIRCULATED, *events]).positions[Unit.PUNJAB]
    assert position.position is Position.ENDORSE


def test_the_secretariat_records_feedback_on_a_units_behalf() -> None:
    on_behalf = feedback(actor=SECRETARIAT, unit=Unit.AJK, person="Secretary WDD AJK")
    [event] = decide(on_behalf, fold(UP_TO_CIRCULATED))
    assert isinstance(event, FeedbackReceived)
    assert (event.unit, event.person) == (Unit.AJK, "Secretary WDD AJK")


def test_a_later_feedback_supersedes_the_units_position_and_both_stay_in_history() -> None:
    objection = feedback(position=Position.OBJECT, comments="The timeline is too short")
    given = [*UP_TO_CIRCULATED, PUNJAB_ENDORSES]

    events = decide(objection, fold(given))

    history = [*given, *events]
    state = fold(history)
    assert state.positions[Unit.PUNJAB].position is Position.OBJECT
    assert [e.position for e in history if isinstance(e, FeedbackReceived)] == [
        Position.ENDORSE,
        Position.OBJECT,
    ]


@pytest.mark.parametrize("history", ["passed", "approved", "signed", "action_plan_adopted"])
def test_feedback_only_while_circulated(history: str) -> None:
    refused = refusal(feedback(), *OPEN_HISTORIES[history])
    assert refused.rule == "resolution.feedback.requires_circulation"


def test_feedback_only_from_circulated_participants() -> None:
    outsider = feedback(actor=focal_person(Unit.BALOCHISTAN), unit=Unit.BALOCHISTAN)
    refused = refusal(outsider, *UP_TO_CIRCULATED)
    assert refused.rule == "resolution.feedback.not_a_participant"


def test_a_focal_person_cannot_give_feedback_for_another_unit() -> None:
    for_sindh = feedback(actor=focal_person(Unit.PUNJAB), unit=Unit.SINDH)
    refused = refusal(for_sindh, *UP_TO_CIRCULATED)
    assert isinstance(refused, NotAuthorised)
    assert refused.rule == "resolution.auth.own_unit_only"


# --- amending -----------------------------------------------------------------------------


def test_a_circulated_resolution_is_amended_with_a_reason() -> None:
    events = decide(amend(), fold(UP_TO_CIRCULATED))

    assert events == [
        ResolutionAmended(
            resolution_id=RESOLUTION,
            title="Independent WDDs",
            text="Each unit will enact a law.",
            reason="Sindh asked for stronger wording",
        )
    ]
    state = fold([*UP_TO_CIRCULATED, *events])
    assert (state.text, state.amendments) == ("Each unit will enact a law.", 1)


def test_an_amendment_of_the_title_keeps_the_text() -> None:
    [event] = decide(amend(title="Autonomous WDDs", text=None), fold(UP_TO_CIRCULATED))
    assert isinstance(event, ResolutionAmended)
    assert (event.title, event.text) == ("Autonomous WDDs", TEXT)


@pytest.mark.parametrize("history", ["passed", "approved", "signed", "action_plan_adopted"])
def test_a_resolution_is_amended_only_while_circulated(history: str) -> None:
    refused = refusal(amend(), *OPEN_HISTORIES[history])
    assert refused.rule == "resolution.amend.requires_circulation"


def test_an_amendment_that_changes_nothing_is_refused() -> None:
    refused = refusal(amend(text=TEXT), *UP_TO_CIRCULATED)
    assert refused.rule == "resolution.amend.no_change"


def test_an_amendment_gives_a_new_title_or_text() -> None:
    with pytest.raises(ValidationError):
        amend(title=None, text=None)


# --- approving and signing ----------------------------------------------------------------


def test_a_circulated_resolution_is_approved() -> None:
    events = decide(approve(), fold(UP_TO_CIRCULATED))

    assert events == [APPROVED]
    assert fold([*UP_TO_CIRCULATED, *events]).status is ResolutionStatus.APPROVED


@pytest.mark.parametrize("history", ["passed", "approved", "signed", "action_plan_adopted"])
def test_a_resolution_is_approved_only_after_circulation(history: str) -> None:
    refused = refusal(approve(), *OPEN_HISTORIES[history])
    assert refused.rule == "resolution.approve.requires_circulation"


def test_an_approved_resolution_is_signed() -> None:
    events = decide(sign(), fold(UP_TO_APPROVED))

    assert events == [SIGNED]
    state = fold([*UP_TO_APPROVED, *events])
    assert state.status is ResolutionStatus.SIGNED
    assert state.signatories == SIGNATORIES


@pytest.mark.parametrize("history", ["passed", "circulated", "signed", "action_plan_adopted"])
def test_a_resolution_is_signed_only_after_approval(history: str) -> None:
    refused = refusal(sign(), *OPEN_HISTORIES[history])
    assert refused.rule == "resolution.sign.requires_approval"


def test_a_signature_has_signatories() -> None:
    with pytest.raises(ValidationError):
        sign(signatories=())


# --- action plan --------------------------------------------------------------------------


def test_a_signed_resolution_adopts_its_action_plan() -> None:
    events = decide(adopt(), fold(UP_TO_SIGNED))

    assert events == [ADOPTED]
    state = fold([*UP_TO_SIGNED, *events])
    assert state.status is ResolutionStatus.ACTION_PLAN_ADOPTED
    assert state.quarter == "2016-Q1"
    assert set(state.actions) == {"a1", "a2"}
    assert state.actions["a1"].status is ProgressStatus.NOT_STARTED


@pytest.mark.parametrize("history", ["passed", "circulated", "approved", "action_plan_adopted"])
def test_an_action_plan_is_adopted_only_after_signing(history: str) -> None:
    refused = refusal(adopt(), *OPEN_HISTORIES[history])
    assert refused.rule == "resolution.action_plan.requires_signature"


@pytest.mark.parametrize("quarter", ["2016Q1", "2016-Q5", "16-Q1", "2016-q1", ""])
def test_a_quarter_reads_like_2016_q1(quarter: str) -> None:
    with pytest.raises(ValidationError):
        adopt(quarter=quarter)


def test_an_action_plan_has_actions() -> None:
    with pytest.raises(ValidationError):
        adopt(actions=())


def test_action_ids_are_unique_within_the_plan() -> None:
    twice = (ACTIONS[0], ACTIONS[1].model_copy(update={"action_id": "a1"}))
    with pytest.raises(ValidationError):
        adopt(actions=twice)


def test_each_action_belongs_to_a_member_unit() -> None:
    action = {"action_id": "a3", "unit": "islamabad", "description": "x", "due_on": "2016-03-31"}
    with pytest.raises(ValidationError):
        adopt(actions=(action,))


# --- progress -----------------------------------------------------------------------------


def test_the_actions_focal_person_reports_progress() -> None:
    events = decide(progress(), fold(UP_TO_ADOPTED))

    assert events == [
        ProgressReported(
            resolution_id=RESOLUTION,
            action_id="a1",
            unit=Unit.PUNJAB,
            status=ProgressStatus.IN_PROGRESS,
            percent=40,
            narrative="The draft is with the law department.",
            evidence=("letter no. 12/2016",),
        )
    ]
    action = fold([*UP_TO_ADOPTED, *events]).actions["a1"]
    assert (action.status, action.percent) == (ProgressStatus.IN_PROGRESS, 40)


def test_the_secretariat_reports_progress_on_a_units_behalf() -> None:
    [event] = decide(progress(actor=SECRETARIAT, action_id="a2"), fold(UP_TO_ADOPTED))
    assert isinstance(event, ProgressReported)
    assert event.unit is Unit.SINDH


@pytest.mark.parametrize("history", ["passed", "circulated", "approved", "signed"])
def test_progress_only_once_an_action_plan_is_adopted(history: str) -> None:
    refused = refusal(progress(), *OPEN_HISTORIES[history])
    assert refused.rule == "resolution.progress.requires_action_plan"


def test_progress_only_on_an_adopted_action() -> None:
    refused = refusal(progress(action_id="a9"), *UP_TO_ADOPTED)
    assert refused.rule == "resolution.progress.unknown_action"


def test_a_focal_person_reports_progress_only_on_their_units_actions() -> None:
    refused = refusal(progress(action_id="a2"), *UP_TO_ADOPTED)  # a2 belongs to Sindh
    assert isinstance(refused, NotAuthorised)
    assert refused.rule == "resolution.auth.own_unit_only"


@pytest.mark.parametrize("percent", [-1, 101])
def test_percent_is_between_0_and_100(percent: int) -> None:
    with pytest.raises(ValidationError):
        progress(percent=percent)


@pytest.mark.parametrize("percent", [40.5, 40.0, "40", True])
def test_percent_is_an_int_never_a_float(percent: object) -> None:
    with pytest.raises(ValidationError):
        progress(percent=percent)


def test_a_completed_action_is_100_percent_done() -> None:
    with pytest.raises(ValidationError):
        progress(status=ProgressStatus.COMPLETED, percent=90)


def test_no_progress_after_an_action_is_completed() -> None:
    refused = refusal(progress(), *UP_TO_ADOPTED, A1_COMPLETED)
    assert refused.rule == "resolution.progress.action_completed"


def test_other_actions_progress_after_one_is_completed() -> None:
    sindh = progress(actor=focal_person(Unit.SINDH), action_id="a2")
    assert decide(sindh, fold([*UP_TO_ADOPTED, A1_COMPLETED]))


# --- closing ------------------------------------------------------------------------------


@pytest.mark.parametrize("history", list(OPEN_HISTORIES))
def test_a_resolution_is_withdrawn_from_any_open_state(history: str) -> None:
    given = OPEN_HISTORIES[history]

    events = decide(close(), fold(given))

    assert events == [WITHDRAWN]
    state = fold([*given, *events])
    assert (state.status, state.outcome) == (ResolutionStatus.CLOSED, CloseOutcome.WITHDRAWN)


def test_a_resolution_is_superseded_by_another() -> None:
    superseded = close(
        outcome=CloseOutcome.SUPERSEDED, superseded_by=SUCCESSOR, successor_exists=True
    )
    events = decide(superseded, fold(UP_TO_SIGNED))
    assert fold([*UP_TO_SIGNED, *events]).superseded_by == SUCCESSOR


def test_an_adopted_resolution_is_closed_as_implemented() -> None:
    implemented = close(outcome=CloseOutcome.IMPLEMENTED, reason="All actions done")
    a2_completed = A1_COMPLETED.model_copy(update={"action_id": "a2", "unit": Unit.SINDH})
    [event] = decide(implemented, fold([*UP_TO_ADOPTED, A1_COMPLETED, a2_completed]))
    assert isinstance(event, ResolutionClosed)
    assert event.outcome is CloseOutcome.IMPLEMENTED


@pytest.mark.parametrize("history", ["passed", "circulated", "approved", "signed"])
def test_implemented_only_after_an_action_plan_was_adopted(history: str) -> None:
    refused = refusal(close(outcome=CloseOutcome.IMPLEMENTED), *OPEN_HISTORIES[history])
    assert refused.rule == "resolution.close.implemented_requires_action_plan"


def test_a_resolution_is_closed_only_once() -> None:
    refused = refusal(close(), *UP_TO_ADOPTED, WITHDRAWN)
    assert refused.rule == "resolution.close.already_closed"


def test_superseded_by_goes_only_with_the_superseded_outcome() -> None:
    with pytest.raises(ValidationError):
        close(outcome=CloseOutcome.WITHDRAWN, superseded_by=SUCCESSOR)


def test_a_resolution_cannot_supersede_itself() -> None:
    with pytest.raises(ValidationError):
        close(outcome=CloseOutcome.SUPERSEDED, superseded_by=RESOLUTION)


LATER_COMMANDS: list[ResolutionCommand] = [
    circulate(),
    feedback(),
    amend(),
    approve(),
    sign(),
    adopt(),
    progress(),
    close(),
]
LATER_IDS = ["circulate", "feedback", "amend", "approve", "sign", "adopt", "progress", "close"]


@pytest.mark.parametrize("command", LATER_COMMANDS, ids=LATER_IDS)
def test_commands_on_a_resolution_never_passed_are_not_found(command: ResolutionCommand) -> None:
    refused = refusal(command)
    assert isinstance(refused, NotFound)
    assert refused.rule == "resolution.not_found"


@pytest.mark.parametrize("command", LATER_COMMANDS[:-1], ids=LATER_IDS[:-1])
def test_a_closed_resolution_accepts_nothing_more(command: ResolutionCommand) -> None:
    assert refusal(command, *UP_TO_ADOPTED, WITHDRAWN).rule == "resolution.closed"


# --- authorisation ------------------------------------------------------------------------

NOT_SECRETARIAT = [
    focal_person(Unit.PUNJAB),
    focal_person(Unit.NCSW),
    AUDITOR,
    Actor.service("reminders"),
    Actor(subject="staff:sindh", unit=Unit.SINDH, role=Role.SECRETARIAT),
]
LIFECYCLE: list[tuple[ResolutionCommand, tuple[DomainEvent, ...]]] = [
    (pass_(), ()),
    (circulate(), UP_TO_PASSED),
    (amend(), UP_TO_CIRCULATED),
    (approve(), UP_TO_CIRCULATED),
    (sign(), UP_TO_APPROVED),
    (adopt(), UP_TO_SIGNED),
    (close(), UP_TO_ADOPTED),
]


@pytest.mark.parametrize("actor", NOT_SECRETARIAT, ids=lambda actor: actor.subject)
@pytest.mark.parametrize(
    ("command", "history"),
    LIFECYCLE,
    ids=["pass", "circulate", "amend", "approve", "sign", "adopt", "close"],
)
def test_only_the_ncsw_secretariat_runs_the_lifecycle(
    actor: Actor, command: ResolutionCommand, history: tuple[DomainEvent, ...]
) -> None:
    # The same command from the secretariat is accepted, so the actor alone is refused.
    assert decide(command, fold(history))
    refused = refusal(command.model_copy(update={"actor": actor}), *history)
    assert isinstance(refused, NotAuthorised)
    assert refused.rule == "resolution.auth.secretariat_only"


@pytest.mark.parametrize(
    "actor",
    [
        AUDITOR,
        Actor.service("reminders"),
        Actor(subject="s", unit=Unit.SINDH, role=Role.SECRETARIAT),
    ],
    ids=["auditor", "service", "provincial-secretariat"],
)
@pytest.mark.parametrize(
    ("command", "history"),
    [(feedback(), UP_TO_CIRCULATED), (progress(), UP_TO_ADOPTED)],
    ids=["feedback", "progress"],
)
def test_only_focal_persons_and_the_secretariat_speak_for_a_unit(
    actor: Actor, command: ResolutionCommand, history: tuple[DomainEvent, ...]
) -> None:
    refused = refusal(command.model_copy(update={"actor": actor}), *history)
    assert isinstance(refused, NotAuthorised)
    assert refused.rule == "resolution.auth.focal_person_or_secretariat"


# --- folding ------------------------------------------------------------------------------


def test_the_version_counts_the_events_folded() -> None:
    assert ResolutionState.initial().version == 0
    assert fold(UP_TO_ADOPTED).version == len(UP_TO_ADOPTED)


def test_evolve_rejects_events_of_other_aggregates() -> None:
    class SomethingElseHappened(DomainEvent):
        event_type = "SomethingElseHappened"

    with pytest.raises(TypeError):
        evolve(ResolutionState.initial(), SomethingElseHappened())


# --- plausible dates ----------------------------------------------------------------------


def test_a_feedback_due_date_is_at_most_ten_years_ahead() -> None:
    refused = refusal(circulate(feedback_due=date(2025, 12, 3)), *UP_TO_PASSED)
    assert (refused.rule, refused.status) == ("date.too_far_ahead", 422)


def test_a_resolution_is_not_signed_on_a_day_still_to_come() -> None:
    refused = refusal(sign(at=AT), *UP_TO_APPROVED)  # signed_on 2016-01-05, at 2015-12-01
    assert (refused.rule, refused.status) == ("date.in_future", 422)


def test_an_action_is_due_at_most_ten_years_ahead() -> None:
    late = Action(action_id="a9", unit=Unit.PUNJAB, description="Later", due_on=date(2026, 1, 1))
    refused = refusal(adopt(actions=(late,)), *UP_TO_SIGNED)
    assert refused.rule == "date.too_far_ahead"


@pytest.mark.parametrize("due_on", [1459382400, "2016-03-31T00:00:00", "9999-12-31"])
def test_an_action_due_date_is_a_plausible_calendar_date(due_on: object) -> None:
    action = {"action_id": "a1", "unit": "punjab", "description": "Draft", "due_on": due_on}
    with pytest.raises(ValidationError) as refused:
        adopt(actions=[action])
    assert refused.value.errors()[0]["type"].startswith("date.")


@pytest.mark.parametrize("quarter", ["0000-Q1", "9999-Q4", "2016-Q0"])
def test_an_action_plan_quarter_is_plausible(quarter: str) -> None:
    with pytest.raises(ValidationError):
        adopt(quarter=quarter)
