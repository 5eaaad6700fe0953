"""The resolutions service's event contracts: what it publishes on its topic.

The payloads and their value objects are the only thing other services know of it;
fields may grow, names and meanings never change.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Self
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from ipmg_contracts.references import resolution_reference
from ipmg_shared.actors import Unit
from ipmg_shared.events import DomainEvent, EventRegistry

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5_000)]
ResolutionText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)
]
EvidenceRef = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
ActionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")]
Quarter = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-Q[1-4]$")]  # e.g. "2016-Q1"
ResolutionNumber = Annotated[int, Field(strict=True, ge=1, le=9_999)]
Percent = Annotated[int, Field(strict=True, ge=0, le=100)]  # whole percent, never a float


def _distinct_units(units: tuple[Unit, ...]) -> tuple[Unit, ...]:
    if len(set(units)) != len(units):
        raise ValueError("a unit is listed more than once")
    return units


Units = Annotated[tuple[Unit, ...], Field(min_length=1), AfterValidator(_distinct_units)]


class ValueObject(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PriorityArea(StrEnum):
    CEDAW = "cedaw"
    INDEPENDENT_WDDS = "independent_wdds"
    LEADERSHIP_CAPACITY = "leadership_capacity"
    NATIONAL_POLICY = "national_policy"
    OTHER = "other"


class Position(StrEnum):
    ENDORSE = "endorse"
    AMEND = "amend"
    OBJECT = "object"


class ProgressStatus(StrEnum):
    NOT_STARTED = "not_started"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    BLOCKED = "blocked"


class CloseOutcome(StrEnum):
    IMPLEMENTED = "implemented"
    WITHDRAWN = "withdrawn"
    SUPERSEDED = "superseded"


class ResolutionStatus(StrEnum):
    PASSED = "passed"
    CIRCULATED = "circulated"
    APPROVED = "approved"
    SIGNED = "signed"
    ACTION_PLAN_ADOPTED = "action_plan_adopted"
    CLOSED = "closed"


class Commitment(ValueObject):
    """A national or international commitment the resolution serves."""

    instrument: Name  # e.g. "CEDAW", "National Policy for Development and Empowerment of Women"
    detail: Note | None


class Signatory(ValueObject):
    name: Name
    role: Name
    unit: Unit


class Action(ValueObject):
    action_id: ActionId
    unit: Unit
    description: Note
    due_on: date


def _distinct_action_ids(actions: tuple[Action, ...]) -> tuple[Action, ...]:
    ids = [action.action_id for action in actions]
    if len(set(ids)) != len(ids):
        raise ValueError("action ids must be unique within an action plan")
    return actions


Actions = Annotated[
    tuple[Action, ...], Field(min_length=1, max_length=200), AfterValidator(_distinct_action_ids)
]
Signatories = Annotated[tuple[Signatory, ...], Field(min_length=1, max_length=100)]
Commitments = Annotated[tuple[Commitment, ...], Field(max_length=50)]
Evidence = Annotated[tuple[EvidenceRef, ...], Field(max_length=50)]


def check_progress(status: ProgressStatus, percent: int) -> None:
    if status is ProgressStatus.COMPLETED and percent != 100:
        raise ValueError("a completed action is 100 percent done")


def check_closing(resolution_id: UUID, outcome: CloseOutcome, superseded_by: UUID | None) -> None:
    if superseded_by is not None and outcome is not CloseOutcome.SUPERSEDED:
        raise ValueError("superseded_by is given only when the outcome is superseded")
    if superseded_by == resolution_id:
        raise ValueError("a resolution cannot supersede itself")


# --- events -------------------------------------------------------------------------------


class ResolutionPassed(DomainEvent):
    """A meeting passed a joint resolution: track it from now on, for its responsible units."""

    event_type = "ResolutionPassed"

    resolution_id: UUID
    meeting_id: UUID
    passed_on: date  # the day the meeting was held
    number: ResolutionNumber
    title: Title
    text: ResolutionText
    priority_area: PriorityArea
    commitments: Commitments
    responsible_units: Units

    @property
    def reference(self) -> str:
        """What people call it, e.g. ``IPMG/2015-Q4/R1``."""
        return resolution_reference(self.passed_on, self.number)


class ResolutionCirculated(DomainEvent):
    """A resolution went to its participants for feedback, due by the given day."""

    event_type = "ResolutionCirculated"

    resolution_id: UUID
    participants: Units
    feedback_due: date


class FeedbackReceived(DomainEvent):
    """A unit gave its position on a circulated resolution; it supersedes its earlier one."""

    event_type = "FeedbackReceived"

    resolution_id: UUID
    unit: Unit
    person: Name  # who expressed the unit's position (the actor is in the envelope)
    position: Position
    comments: Note | None


class ResolutionAmended(DomainEvent):
    """A resolution's title and text changed after feedback: the new text is the one to read."""

    event_type = "ResolutionAmended"

    resolution_id: UUID
    title: Title
    text: ResolutionText
    reason: Note


class RoundClosedBy(StrEnum):
    ALL_ANSWERED = "all_answered"
    DUE_DATE_PASSED = "due_date_passed"


class ApprovalBasis(ValueObject):
    """What the approval rested on: the round's positions and any override of an objection."""

    closed_by: RoundClosedBy
    endorsed: tuple[Unit, ...] = ()
    amend: tuple[Unit, ...] = ()
    objected: tuple[Unit, ...] = ()
    unanswered: tuple[Unit, ...] = ()
    overridden: tuple[Unit, ...] = ()  # units whose amend/object the secretariat set aside
    override_reason: Note | None = None


class ResolutionApproved(DomainEvent):
    """The secretariat approved the resolution: it may now be signed."""

    event_type = "ResolutionApproved"

    resolution_id: UUID
    basis: ApprovalBasis | None = None  # added later: approvals recorded before it have none


class ResolutionSigned(DomainEvent):
    """The resolution was signed: send its text to its units; an action plan may follow."""

    event_type = "ResolutionSigned"

    resolution_id: UUID
    signed_on: date
    signatories: Signatories


class ActionPlanAdopted(DomainEvent):
    """The resolution's actions for a quarter, each with its unit and due date."""

    event_type = "ActionPlanAdopted"

    resolution_id: UUID
    quarter: Quarter
    actions: Actions


class ProgressReported(DomainEvent):
    """A unit reported where one of its actions stands (status, percent, evidence)."""

    event_type = "ProgressReported"

    resolution_id: UUID
    action_id: ActionId
    unit: Unit
    status: ProgressStatus
    percent: Percent
    narrative: Note
    evidence: Evidence

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        check_progress(self.status, self.percent)
        return self


class ActionWaiver(ValueObject):
    """An open action the secretariat closes without completion, and why."""

    action_id: ActionId
    reason: Note


Waivers = Annotated[tuple[ActionWaiver, ...], Field(max_length=500)]


class ResolutionClosed(DomainEvent):
    """The resolution is finished (implemented, withdrawn, superseded): stop following it up."""

    event_type = "ResolutionClosed"

    resolution_id: UUID
    outcome: CloseOutcome
    reason: Note
    superseded_by: UUID | None
    waived: Waivers = ()  # added later: closings recorded before it waived nothing

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        check_closing(self.resolution_id, self.outcome, self.superseded_by)
        return self


REGISTRY = EventRegistry(
    [
        ResolutionPassed,
        ResolutionCirculated,
        FeedbackReceived,
        ResolutionAmended,
        ResolutionApproved,
        ResolutionSigned,
        ActionPlanAdopted,
        ProgressReported,
        ResolutionClosed,
    ]
)
