"""The Resolution aggregate: a joint resolution from its passing at a meeting to its closing.

Lifecycle: passed -> circulated (feedback, amendments, re-circulation) -> approved -> signed
-> action plan adopted (progress on each action) -> closed. A resolution may be closed from
any of these states; ``implemented`` only once an action plan was adopted.

Pure: ``decide(command, state)`` returns the new events or raises a refusal naming the rule;
``evolve`` folds one event into the state. Ids, the clock and the facts about the meeting
arrive on the command; nothing here does I/O.

Shape rules (non-empty lists, distinct units and action ids, percent 0..100, a completed
action at 100 %) are enforced by the models, so a malformed command fails validation before
``decide`` sees it and a stored event can never break them either. Rules that depend on the
resolution's history or on who acts are enforced by ``decide``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Self, assert_never
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BeforeValidator,
    Field,
    model_validator,
)

from ipmg_contracts.references import resolution_reference
from ipmg_contracts.resolutions import (
    REGISTRY,
    Action,
    ActionId,
    ActionPlanAdopted,
    Actions,
    CloseOutcome,
    Commitment,
    Commitments,
    Evidence,
    EvidenceRef,
    FeedbackReceived,
    Name,
    Note,
    Percent,
    Position,
    PriorityArea,
    ProgressReported,
    ProgressStatus,
    Quarter,
    ResolutionAmended,
    ResolutionApproved,
    ResolutionCirculated,
    ResolutionClosed,
    ResolutionNumber,
    ResolutionPassed,
    ResolutionSigned,
    ResolutionStatus,
    ResolutionText,
    Signatories,
    Signatory,
    Title,
    Units,
    ValueObject,
    Waivers,
    check_closing,
    check_progress,
)
from ipmg_resolutions.approval import approval_basis
from ipmg_resolutions.closing import WAIVER_NOT_OPEN, check_implemented, check_successor
from ipmg_resolutions.numbering import check_number
from ipmg_shared.actors import Actor, Role, Unit
from ipmg_shared.domain import CommandRefused, NotAuthorised, NotFound
from ipmg_shared.events import DomainEvent
from ipmg_shared.plausible import (
    DUE_HORIZON_YEARS,
    PlausibleDate,
    PlausibleQuarter,
    plausible_date,
    require_past,
    require_within,
)

# --- commands -----------------------------------------------------------------------------


class MeetingStatus(StrEnum):
    SCHEDULED = "scheduled"
    HELD = "held"
    CANCELLED = "cancelled"


class HeldMeetingFacts(ValueObject):
    """What this service knows about a meeting, from its own projection of the meetings topic."""

    meeting_id: UUID
    status: MeetingStatus
    held_on: date | None = None
    host_unit: Unit | None = None

    @model_validator(mode="after")
    def _held_has_date_and_host(self) -> Self:
        if self.status is MeetingStatus.HELD and (self.held_on is None or self.host_unit is None):
            raise ValueError("a held meeting has a date and a host")
        return self


def _strict_due_dates(actions: Any) -> Any:
    """Each action's due date as strict as any other date a client sends, before parsing."""
    if not isinstance(actions, list | tuple):
        return actions
    checked: list[Any] = []
    for action in actions:
        if isinstance(action, dict) and "due_on" in action:
            action = {**action, "due_on": plausible_date(action["due_on"])}
        elif isinstance(action, Action):
            plausible_date(action.due_on)
        checked.append(action)
    return checked


PlannedActions = Annotated[Actions, BeforeValidator(_strict_due_dates)]


class Command(ValueObject):
    actor: Actor
    at: AwareDatetime
    resolution_id: UUID


class PassResolution(Command):
    meeting_id: UUID
    meeting: HeldMeetingFacts | None  # None: the meeting is not (yet) known here
    number: ResolutionNumber
    title: Title
    text: ResolutionText
    priority_area: PriorityArea
    commitments: Commitments = ()
    responsible_units: Units
    numbers_taken: tuple[int, ...] = ()  # passed at the same meeting, filled by the service

    @model_validator(mode="after")
    def _facts_about_this_meeting(self) -> Self:
        if self.meeting is not None and self.meeting.meeting_id != self.meeting_id:
            raise ValueError("the meeting facts are about another meeting")
        return self


class CirculateResolution(Command):
    participants: Units
    feedback_due: PlausibleDate


class GiveFeedback(Command):
    unit: Unit
    person: Name
    position: Position
    comments: Note | None = None


class AmendResolution(Command):
    title: Title | None = None  # None keeps the current one
    text: ResolutionText | None = None
    reason: Note

    @model_validator(mode="after")
    def _changes_something(self) -> Self:
        if self.title is None and self.text is None:
            raise ValueError("an amendment gives a new title, a new text, or both")
        return self


class ApproveResolution(Command):
    # Units whose current amend/object position the secretariat sets aside, and why.
    overridden: tuple[Unit, ...] = Field(default=(), max_length=len(Unit))
    override_reason: Note | None = None


class SignResolution(Command):
    signed_on: PlausibleDate
    signatories: Signatories


class AdoptActionPlan(Command):
    quarter: PlausibleQuarter
    actions: PlannedActions


class ReportProgress(Command):
    action_id: ActionId
    status: ProgressStatus
    percent: Percent
    narrative: Note
    evidence: Evidence = ()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        check_progress(self.status, self.percent)
        return self


class CloseResolution(Command):
    outcome: CloseOutcome
    reason: Note
    superseded_by: UUID | None = None
    waived: Waivers = ()
    successor_exists: bool | None = None  # filled by the service when superseded_by is given

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        check_closing(self.resolution_id, self.outcome, self.superseded_by)
        return self


ResolutionCommand = (
    PassResolution
    | CirculateResolution
    | GiveFeedback
    | AmendResolution
    | ApproveResolution
    | SignResolution
    | AdoptActionPlan
    | ReportProgress
    | CloseResolution
)


# --- state --------------------------------------------------------------------------------


class CurrentPosition(ValueObject):
    """A unit's latest feedback in the current circulation round."""

    person: str
    position: Position
    comments: str | None


class ActionState(ValueObject):
    action: Action
    status: ProgressStatus = ProgressStatus.NOT_STARTED
    percent: int = 0


class ResolutionState(ValueObject):
    """What the resolution's events say so far; ``status`` is None while the stream is empty."""

    version: int = 0
    resolution_id: UUID | None = None
    status: ResolutionStatus | None = None
    meeting_id: UUID | None = None
    passed_on: date | None = None
    number: int | None = None
    title: str = ""
    text: str = ""
    priority_area: PriorityArea | None = None
    commitments: tuple[Commitment, ...] = ()
    responsible_units: tuple[Unit, ...] = ()
    amendments: int = 0
    circulation_round: int = 0
    participants: tuple[Unit, ...] = ()
    feedback_due: date | None = None
    positions: dict[Unit, CurrentPosition] = Field(default_factory=dict)
    signed_on: date | None = None
    signatories: tuple[Signatory, ...] = ()
    quarter: str | None = None
    actions: dict[str, ActionState] = Field(default_factory=dict)
    outcome: CloseOutcome | None = None
    closing_reason: str | None = None
    superseded_by: UUID | None = None

    @property
    def reference(self) -> str | None:
        if self.passed_on is None or self.number is None:
            return None
        return resolution_reference(self.passed_on, self.number)

    @classmethod
    def initial(cls) -> ResolutionState:
        return cls()


def evolve(state: ResolutionState, event: DomainEvent) -> ResolutionState:
    changes: dict[str, Any]
    match event:
        case ResolutionPassed():
            changes = {
                "resolution_id": event.resolution_id,
                "status": ResolutionStatus.PASSED,
                "meeting_id": event.meeting_id,
                "passed_on": event.passed_on,
                "number": event.number,
                "title": event.title,
                "text": event.text,
                "priority_area": event.priority_area,
                "commitments": event.commitments,
                "responsible_units": event.responsible_units,
            }
        case ResolutionCirculated():
            # Each circulation opens a new round: positions given on an earlier round stay in
            # history but are no longer current.
            changes = {
                "status": ResolutionStatus.CIRCULATED,
                "circulation_round": state.circulation_round + 1,
                "participants": event.participants,
                "feedback_due": event.feedback_due,
                "positions": {},
            }
        case FeedbackReceived():
            position = CurrentPosition(
                person=event.person, position=event.position, comments=event.comments
            )
            changes = {"positions": {**state.positions, event.unit: position}}
        case ResolutionAmended():
            changes = {
                "title": event.title,
                "text": event.text,
                "amendments": state.amendments + 1,
            }
        case ResolutionApproved():
            changes = {"status": ResolutionStatus.APPROVED}
        case ResolutionSigned():
            changes = {
                "status": ResolutionStatus.SIGNED,
                "signed_on": event.signed_on,
                "signatories": event.signatories,
            }
        case ActionPlanAdopted():
            changes = {
                "status": ResolutionStatus.ACTION_PLAN_ADOPTED,
                "quarter": event.quarter,
                "actions": {
                    action.action_id: ActionState(action=action) for action in event.actions
                },
            }
        case ProgressReported():
            progressed = state.actions[event.action_id].model_copy(
                update={"status": event.status, "percent": event.percent}
            )
            changes = {"actions": {**state.actions, event.action_id: progressed}}
        case ResolutionClosed():
            changes = {
                "status": ResolutionStatus.CLOSED,
                "outcome": event.outcome,
                "closing_reason": event.reason,
                "superseded_by": event.superseded_by,
            }
        case _:
            raise TypeError(f"not a resolution event: {type(event).__name__}")
    return state.model_copy(update={**changes, "version": state.version + 1})


def fold(events: Iterable[DomainEvent]) -> ResolutionState:
    return functools.reduce(evolve, events, ResolutionState.initial())


# --- decisions ----------------------------------------------------------------------------


def decide(command: ResolutionCommand, state: ResolutionState) -> list[DomainEvent]:
    """The events ``command`` produces against ``state``; raises if a rule refuses it."""
    match command:
        case PassResolution():
            return _pass(command, state)
        case CirculateResolution():
            return _circulate(command, state)
        case GiveFeedback():
            return _give_feedback(command, state)
        case AmendResolution():
            return _amend(command, state)
        case ApproveResolution():
            return _approve(command, state)
        case SignResolution():
            return _sign(command, state)
        case AdoptActionPlan():
            return _adopt_action_plan(command, state)
        case ReportProgress():
            return _report_progress(command, state)
        case CloseResolution():
            return _close(command, state)
        case _:
            assert_never(command)


def _pass(command: PassResolution, state: ResolutionState) -> list[DomainEvent]:
    _require_secretariat(command.actor)
    if state.status is not None:
        raise CommandRefused("resolution.pass.already_passed", "this resolution is already passed")
    meeting = command.meeting
    if meeting is None:
        # Refused rather than not found: the meeting may simply not have reached this
        # service's projection yet, and a retry can succeed.
        raise CommandRefused(
            "resolution.pass.meeting_unknown",
            f"meeting {command.meeting_id} is not known to the resolutions service",
        )
    if meeting.status is not MeetingStatus.HELD or meeting.held_on is None:
        raise CommandRefused(
            "resolution.pass.meeting_not_held",
            f"resolutions are passed only at a held meeting; this one is {meeting.status}",
        )
    check_number(
        command.number,
        command.numbers_taken,
        resolution_reference(meeting.held_on, command.number),
    )
    return [
        ResolutionPassed(
            resolution_id=command.resolution_id,
            meeting_id=command.meeting_id,
            passed_on=meeting.held_on,
            number=command.number,
            title=command.title,
            text=command.text,
            priority_area=command.priority_area,
            commitments=command.commitments,
            responsible_units=command.responsible_units,
        )
    ]


def _circulate(command: CirculateResolution, state: ResolutionState) -> list[DomainEvent]:
    # Circulating again while circulated (typically after an amendment) replaces the
    # participants and the due date and starts a new round of feedback.
    _require_secretariat(command.actor)
    status = _open(state)
    if status not in (ResolutionStatus.PASSED, ResolutionStatus.CIRCULATED):
        raise CommandRefused(
            "resolution.circulate.already_approved",
            f"a resolution is circulated only before approval; this one is {status}",
        )
    require_within(command.feedback_due, command.at, DUE_HORIZON_YEARS, "feedback_due")
    return [
        ResolutionCirculated(
            resolution_id=command.resolution_id,
            participants=command.participants,
            feedback_due=command.feedback_due,
        )
    ]


def _give_feedback(command: GiveFeedback, state: ResolutionState) -> list[DomainEvent]:
    _require_acting_for(command.actor, command.unit)
    status = _open(state)
    if status is not ResolutionStatus.CIRCULATED:
        raise CommandRefused(
            "resolution.feedback.requires_circulation",
            f"feedback is taken only while the resolution is circulated; it is {status}",
        )
    if command.unit not in state.participants:
        raise CommandRefused(
            "resolution.feedback.not_a_participant",
            f"the resolution was not circulated to {command.unit}",
        )
    return [
        FeedbackReceived(
            resolution_id=command.resolution_id,
            unit=command.unit,
            person=command.person,
            position=command.position,
            comments=command.comments,
        )
    ]


def _amend(command: AmendResolution, state: ResolutionState) -> list[DomainEvent]:
    _require_secretariat(command.actor)
    status = _open(state)
    if status is not ResolutionStatus.CIRCULATED:
        raise CommandRefused(
            "resolution.amend.requires_circulation",
            f"a resolution is amended only while circulated; it is {status}",
        )
    title = command.title or state.title
    text = command.text or state.text
    if (title, text) == (state.title, state.text):
        raise CommandRefused("resolution.amend.no_change", "the amendment changes nothing")
    return [
        ResolutionAmended(
            resolution_id=command.resolution_id, title=title, text=text, reason=command.reason
        )
    ]


def _approve(command: ApproveResolution, state: ResolutionState) -> list[DomainEvent]:
    _require_secretariat(command.actor)
    status = _open(state)
    if status is not ResolutionStatus.CIRCULATED:
        raise CommandRefused(
            "resolution.approve.requires_circulation",
            f"a resolution is approved only after circulation; it is {status}",
        )
    assert state.feedback_due is not None, "a circulated resolution has a due day"
    basis = approval_basis(
        {unit: current.position for unit, current in state.positions.items()},
        state.participants,
        state.feedback_due,
        command.at.date(),
        command.overridden,
        command.override_reason,
    )
    return [ResolutionApproved(resolution_id=command.resolution_id, basis=basis)]


def _sign(command: SignResolution, state: ResolutionState) -> list[DomainEvent]:
    _require_secretariat(command.actor)
    status = _open(state)
    if status is not ResolutionStatus.APPROVED:
        raise CommandRefused(
            "resolution.sign.requires_approval",
            f"a resolution is signed only after approval; it is {status}",
        )
    require_past(command.signed_on, command.at, "signed_on")
    return [
        ResolutionSigned(
            resolution_id=command.resolution_id,
            signed_on=command.signed_on,
            signatories=command.signatories,
        )
    ]


def _adopt_action_plan(command: AdoptActionPlan, state: ResolutionState) -> list[DomainEvent]:
    _require_secretariat(command.actor)
    status = _open(state)
    if status is not ResolutionStatus.SIGNED:
        raise CommandRefused(
            "resolution.action_plan.requires_signature",
            f"an action plan is adopted only for a signed resolution; it is {status}",
        )
    for action in command.actions:
        require_within(
            action.due_on, command.at, DUE_HORIZON_YEARS, f"due_on of {action.action_id}"
        )
    return [
        ActionPlanAdopted(
            resolution_id=command.resolution_id, quarter=command.quarter, actions=command.actions
        )
    ]


def _report_progress(command: ReportProgress, state: ResolutionState) -> list[DomainEvent]:
    _require_unit_role(command.actor)
    status = _open(state)
    if status is not ResolutionStatus.ACTION_PLAN_ADOPTED:
        raise CommandRefused(
            "resolution.progress.requires_action_plan",
            f"progress is reported only on an adopted action plan; the resolution is {status}",
        )
    adopted = state.actions.get(command.action_id)
    if adopted is None:
        raise CommandRefused(
            "resolution.progress.unknown_action",
            f"the action plan has no action {command.action_id!r}",
        )
    unit = adopted.action.unit
    _require_acting_for(command.actor, unit)
    if adopted.status is ProgressStatus.COMPLETED:
        raise CommandRefused(
            "resolution.progress.action_completed",
            f"action {command.action_id!r} is already completed",
        )
    return [
        ProgressReported(
            resolution_id=command.resolution_id,
            action_id=command.action_id,
            unit=unit,
            status=command.status,
            percent=command.percent,
            narrative=command.narrative,
            evidence=command.evidence,
        )
    ]


def _close(command: CloseResolution, state: ResolutionState) -> list[DomainEvent]:
    _require_secretariat(command.actor)
    if state.status is None:
        raise _not_found()
    if state.status is ResolutionStatus.CLOSED:
        raise CommandRefused("resolution.close.already_closed", "this resolution is closed")
    if (
        command.outcome is CloseOutcome.IMPLEMENTED
        and state.status is not ResolutionStatus.ACTION_PLAN_ADOPTED
    ):
        raise CommandRefused(
            "resolution.close.implemented_requires_action_plan",
            f"a resolution is implemented only through an adopted action plan; it is "
            f"{state.status}",
        )
    if command.outcome is CloseOutcome.IMPLEMENTED:
        statuses = {action_id: action.status for action_id, action in state.actions.items()}
        check_implemented(statuses, command.waived)
    elif command.waived:
        raise CommandRefused(WAIVER_NOT_OPEN, "actions are waived only when closing as implemented")
    if command.outcome is CloseOutcome.SUPERSEDED:
        check_successor(command.successor_exists)
    return [
        ResolutionClosed(
            resolution_id=command.resolution_id,
            outcome=command.outcome,
            reason=command.reason,
            superseded_by=command.superseded_by,
            waived=command.waived,
        )
    ]


def _open(state: ResolutionState) -> ResolutionStatus:
    """The status of a resolution that exists and is not closed."""
    if state.status is None:
        raise _not_found()
    if state.status is ResolutionStatus.CLOSED:
        raise CommandRefused("resolution.closed", "this resolution is closed")
    return state.status


def _not_found() -> NotFound:
    return NotFound("resolution.not_found", "no such resolution has been passed")


def _require_secretariat(actor: Actor) -> None:
    if not actor.is_secretariat:
        raise NotAuthorised(
            "resolution.auth.secretariat_only",
            "only the NCSW secretariat runs the resolution lifecycle",
        )


def _require_unit_role(actor: Actor) -> None:
    if not (actor.is_secretariat or actor.role is Role.FOCAL_PERSON):
        raise NotAuthorised(
            "resolution.auth.focal_person_or_secretariat",
            "only a unit's focal person or the NCSW secretariat speaks for a unit",
        )


def _require_acting_for(actor: Actor, unit: Unit) -> None:
    """The secretariat may act on any unit's behalf; a focal person only for their own."""
    _require_unit_role(actor)
    if not actor.is_secretariat and actor.unit is not unit:
        raise NotAuthorised(
            "resolution.auth.own_unit_only",
            f"a focal person of {actor.unit} cannot act for {unit}",
        )


__all__ = [
    "REGISTRY",
    "Action",
    "ActionId",
    "ActionPlanAdopted",
    "ActionState",
    "Actions",
    "AdoptActionPlan",
    "AmendResolution",
    "ApproveResolution",
    "CirculateResolution",
    "CloseOutcome",
    "CloseResolution",
    "Command",
    "Commitment",
    "Commitments",
    "CurrentPosition",
    "Evidence",
    "EvidenceRef",
    "FeedbackReceived",
    "GiveFeedback",
    "HeldMeetingFacts",
    "MeetingStatus",
    "Name",
    "Note",
    "PassResolution",
    "Percent",
    "Position",
    "PriorityArea",
    "ProgressReported",
    "ProgressStatus",
    "Quarter",
    "ReportProgress",
    "ResolutionAmended",
    "ResolutionApproved",
    "ResolutionCirculated",
    "ResolutionClosed",
    "ResolutionCommand",
    "ResolutionNumber",
    "ResolutionPassed",
    "ResolutionSigned",
    "ResolutionState",
    "ResolutionStatus",
    "ResolutionText",
    "SignResolution",
    "Signatories",
    "Signatory",
    "Title",
    "Units",
    "ValueObject",
    "check_closing",
    "check_progress",
    "decide",
    "evolve",
    "fold",
]
