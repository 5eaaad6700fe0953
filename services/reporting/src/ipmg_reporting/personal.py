"""Reports as the policy lets each reader see them: other units' personal data withheld from
whoever may read personal data of their own unit only."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from pydantic import BaseModel

from ipmg_reporting.projections import TimelineEntry
from ipmg_shared.actors import Unit
from ipmg_shared.policy import WITHHELD, withhold_personal_data

Report = TypeVar("Report", bound=BaseModel)

# Timeline lines that name people: who gave feedback, who was sent a message.
NAMING_SUMMARIES = frozenset({"FeedbackReceived", "NotificationSent", "NotificationFailed"})


def withheld(report: Report, own_unit: Unit | None) -> Report:
    """``report`` with the personal data of units other than ``own_unit`` withheld."""
    if own_unit is None:
        return report
    shown = withhold_personal_data(report.model_dump(mode="json"), own_unit)
    return type(report).model_validate(shown)


def withheld_all(reports: Iterable[Report], own_unit: Unit | None) -> list[Report]:
    return [withheld(report, own_unit) for report in reports]


def withheld_timeline(
    entries: Iterable[TimelineEntry], own_unit: Unit | None
) -> list[TimelineEntry]:
    """Timeline entries with other units' actors withheld, and the lines that name people
    withheld unless their own unit's actor wrote them."""
    if own_unit is None:
        return list(entries)
    shown = []
    for entry in withheld_all(entries, own_unit):
        if entry.type in NAMING_SUMMARIES and entry.actor.unit != own_unit.value:
            entry = entry.model_copy(update={"summary": f"{entry.type}: {WITHHELD}"})
        shown.append(entry)
    return shown
