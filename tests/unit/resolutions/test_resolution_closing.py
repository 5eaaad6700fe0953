"""Implemented only when every action is completed or waived; superseded only by a real one."""

from __future__ import annotations

import pytest

from ipmg_contracts.resolutions import ActionWaiver
from ipmg_resolutions.closing import SUCCESSOR_UNKNOWN, UNFINISHED_ACTIONS, WAIVER_NOT_OPEN
from ipmg_resolutions.domain import CloseOutcome, ResolutionClosed, decide, fold
from ipmg_shared.domain import CommandRefused
from ipmg_shared.events import DomainEvent
from tests.unit.resolutions.test_resolution_rules import (
    A1_COMPLETED,
    SUCCESSOR,
    UP_TO_ADOPTED,
    UP_TO_SIGNED,
    close,
)

WAIVE_A2 = ActionWaiver(action_id="a2", reason="Sindh's bill was overtaken by the federal law")


def rule_refusing(command: object, *given: DomainEvent) -> str:
    with pytest.raises(CommandRefused) as refused:
        decide(command, fold(given))  # type: ignore[arg-type]
    return refused.value.rule


def test_implemented_with_an_unfinished_action_is_refused() -> None:
    implemented = close(outcome=CloseOutcome.IMPLEMENTED)

    assert rule_refusing(implemented, *UP_TO_ADOPTED, A1_COMPLETED) == UNFINISHED_ACTIONS
    assert rule_refusing(implemented, *UP_TO_ADOPTED) == UNFINISHED_ACTIONS


def test_an_open_action_waived_with_a_reason_lets_it_close_as_implemented() -> None:
    implemented = close(outcome=CloseOutcome.IMPLEMENTED, waived=(WAIVE_A2,))

    (event,) = decide(implemented, fold([*UP_TO_ADOPTED, A1_COMPLETED]))

    assert isinstance(event, ResolutionClosed)
    assert event.waived == (WAIVE_A2,)


def test_a_completed_or_unknown_action_is_not_waived() -> None:
    completed = ActionWaiver(action_id="a1", reason="Done anyway")
    unknown = ActionWaiver(action_id="a9", reason="Never planned")
    for waiver in (completed, unknown):
        implemented = close(outcome=CloseOutcome.IMPLEMENTED, waived=(WAIVE_A2, waiver))
        assert rule_refusing(implemented, *UP_TO_ADOPTED, A1_COMPLETED) == WAIVER_NOT_OPEN


def test_waivers_belong_to_closing_as_implemented_only() -> None:
    withdrawn = close(waived=(WAIVE_A2,))

    assert rule_refusing(withdrawn, *UP_TO_ADOPTED) == WAIVER_NOT_OPEN


@pytest.mark.parametrize("exists", [False, None])
def test_superseded_only_by_a_resolution_that_exists(exists: bool | None) -> None:
    superseded = close(
        outcome=CloseOutcome.SUPERSEDED, superseded_by=SUCCESSOR, successor_exists=exists
    )

    assert rule_refusing(superseded, *UP_TO_SIGNED) == SUCCESSOR_UNKNOWN
