"""Approval only on a closed feedback round, with no unheard objection; the event says why."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ipmg_contracts.resolutions import ApprovalBasis, Position, RoundClosedBy
from ipmg_resolutions.approval import (
    OUTSTANDING_POSITION,
    OVERRIDE_NOT_OUTSTANDING,
    OVERRIDE_WITHOUT_REASON,
    ROUND_OPEN,
)
from ipmg_resolutions.domain import ResolutionApproved, decide, fold
from ipmg_shared.actors import Unit
from ipmg_shared.domain import CommandRefused
from ipmg_shared.events import DomainEvent
from tests.unit.resolutions.test_resolution_rules import (
    AT,
    PUNJAB_ENDORSES,
    RESOLUTION,
    UP_TO_CIRCULATED,
    approve,
)

SINDH_AMENDS = PUNJAB_ENDORSES.model_copy(update={"unit": Unit.SINDH, "position": Position.AMEND})
AJK_OBJECTS = PUNJAB_ENDORSES.model_copy(update={"unit": Unit.AJK, "position": Position.OBJECT})
AJK_ENDORSES = AJK_OBJECTS.model_copy(update={"position": Position.ENDORSE})
SINDH_ENDORSES = SINDH_AMENDS.model_copy(update={"position": Position.ENDORSE})
REASON = "Sindh's amendment is taken up in the next quarter's plan"


def rule_refusing(command: object, *given: DomainEvent) -> str:
    with pytest.raises(CommandRefused) as refused:
        decide(command, fold([*UP_TO_CIRCULATED, *given]))  # type: ignore[arg-type]
    return refused.value.rule


def test_before_the_due_day_with_units_still_to_answer_the_round_is_open() -> None:
    assert rule_refusing(approve(at=AT), PUNJAB_ENDORSES) == ROUND_OPEN


def test_once_every_participant_answered_the_round_closes_before_its_due_day() -> None:
    given = (PUNJAB_ENDORSES, SINDH_ENDORSES, AJK_ENDORSES)
    (event,) = decide(approve(at=AT), fold([*UP_TO_CIRCULATED, *given]))

    assert event == ResolutionApproved(
        resolution_id=RESOLUTION,
        basis=ApprovalBasis(
            closed_by=RoundClosedBy.ALL_ANSWERED,
            endorsed=(Unit.AJK, Unit.PUNJAB, Unit.SINDH),
        ),
    )


def test_an_outstanding_amend_or_object_blocks_approval() -> None:
    assert rule_refusing(approve(), SINDH_AMENDS) == OUTSTANDING_POSITION
    assert rule_refusing(approve(), AJK_OBJECTS) == OUTSTANDING_POSITION


def test_a_later_endorsement_replaces_an_objection() -> None:
    (event,) = decide(approve(), fold([*UP_TO_CIRCULATED, AJK_OBJECTS, AJK_ENDORSES]))

    assert isinstance(event, ResolutionApproved)
    assert event.basis is not None
    assert event.basis.endorsed == (Unit.AJK,)
    assert event.basis.closed_by is RoundClosedBy.DUE_DATE_PASSED
    assert event.basis.unanswered == (Unit.PUNJAB, Unit.SINDH)


def test_the_secretariat_overrides_a_named_position_with_a_reason() -> None:
    command = approve(overridden=(Unit.SINDH,), override_reason=REASON)
    (event,) = decide(command, fold([*UP_TO_CIRCULATED, PUNJAB_ENDORSES, SINDH_AMENDS]))

    assert isinstance(event, ResolutionApproved)
    assert event.basis == ApprovalBasis(
        closed_by=RoundClosedBy.DUE_DATE_PASSED,
        endorsed=(Unit.PUNJAB,),
        amend=(Unit.SINDH,),
        unanswered=(Unit.AJK,),
        overridden=(Unit.SINDH,),
        override_reason=REASON,
    )


def test_an_override_must_name_every_outstanding_position() -> None:
    command = approve(overridden=(Unit.SINDH,), override_reason=REASON)

    assert rule_refusing(command, SINDH_AMENDS, AJK_OBJECTS) == OUTSTANDING_POSITION


def test_an_override_without_a_reason_is_refused() -> None:
    assert rule_refusing(approve(overridden=(Unit.SINDH,)), SINDH_AMENDS) == (
        OVERRIDE_WITHOUT_REASON
    )


def test_an_override_of_a_unit_with_nothing_outstanding_is_refused() -> None:
    command = approve(overridden=(Unit.PUNJAB,), override_reason=REASON)

    assert rule_refusing(command, PUNJAB_ENDORSES) == OVERRIDE_NOT_OUTSTANDING


def test_the_round_is_judged_on_the_day_of_the_command() -> None:
    on_due_day = approve(at=datetime(2015, 12, 15, 23, 0, tzinfo=UTC))

    assert rule_refusing(on_due_day) == ROUND_OPEN
