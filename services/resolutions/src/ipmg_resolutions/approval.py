"""Approval records its basis: the feedback round is closed and no objection is left unheard.

Pure: the round's current positions, its participants and due day arrive as arguments.
The round is closed once every participant answered or the due day passed; a current
``amend`` or ``object`` blocks approval unless the secretariat overrides that unit's position
with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from ipmg_contracts.resolutions import ApprovalBasis, Position, RoundClosedBy
from ipmg_shared.actors import Unit
from ipmg_shared.domain import CommandRefused

ROUND_OPEN = "resolution.approve.round_open"
OUTSTANDING_POSITION = "resolution.approve.outstanding_position"
OVERRIDE_WITHOUT_REASON = "resolution.approve.override_without_reason"
OVERRIDE_NOT_OUTSTANDING = "resolution.approve.override_not_outstanding"


def approval_basis(
    positions: Mapping[Unit, Position],
    participants: tuple[Unit, ...],
    feedback_due: date,
    today: date,
    overridden: tuple[Unit, ...],
    override_reason: str | None,
) -> ApprovalBasis:
    """The basis of an approval decided on ``today``; raises if the rules refuse it."""
    unanswered = tuple(unit for unit in participants if unit not in positions)
    if not unanswered:
        closed_by = RoundClosedBy.ALL_ANSWERED
    elif today > feedback_due:
        closed_by = RoundClosedBy.DUE_DATE_PASSED
    else:
        raise CommandRefused(
            ROUND_OPEN,
            f"the feedback round is open until {feedback_due}; still to answer: "
            + ", ".join(unanswered),
        )
    at_issue = tuple(
        unit for unit, position in positions.items() if position is not Position.ENDORSE
    )
    not_at_issue = [unit for unit in overridden if unit not in at_issue]
    if not_at_issue:
        raise CommandRefused(
            OVERRIDE_NOT_OUTSTANDING,
            "no amend or object position to override from " + ", ".join(not_at_issue),
        )
    if overridden and override_reason is None:
        raise CommandRefused(
            OVERRIDE_WITHOUT_REASON, "overriding a unit's position needs a recorded reason"
        )
    outstanding = [unit for unit in at_issue if unit not in overridden]
    if outstanding:
        raise CommandRefused(
            OUTSTANDING_POSITION,
            "outstanding amend or object positions from "
            + ", ".join(outstanding)
            + ": amend and re-circulate, or override them by name with a reason",
        )
    return ApprovalBasis(
        closed_by=closed_by,
        endorsed=_holding(positions, Position.ENDORSE),
        amend=_holding(positions, Position.AMEND),
        objected=_holding(positions, Position.OBJECT),
        unanswered=unanswered,
        overridden=overridden,
        override_reason=override_reason,
    )


def _holding(positions: Mapping[Unit, Position], wanted: Position) -> tuple[Unit, ...]:
    return tuple(sorted(unit for unit, position in positions.items() if position is wanted))
