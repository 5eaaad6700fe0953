"""Closing: *implemented* only when every action is done or waived; *superseded* only by a
resolution that exists.

Pure: the action states and whether the successor exists arrive as arguments.
"""

from __future__ import annotations

from collections.abc import Mapping

from ipmg_contracts.resolutions import ActionWaiver, ProgressStatus
from ipmg_shared.domain import CommandRefused

UNFINISHED_ACTIONS = "resolution.close.unfinished_actions"
WAIVER_NOT_OPEN = "resolution.close.waiver_not_open"
SUCCESSOR_UNKNOWN = "resolution.close.successor_unknown"


def check_implemented(
    action_statuses: Mapping[str, ProgressStatus], waived: tuple[ActionWaiver, ...]
) -> None:
    open_actions = [
        action_id
        for action_id, status in action_statuses.items()
        if status is not ProgressStatus.COMPLETED
    ]
    not_open = [waiver.action_id for waiver in waived if waiver.action_id not in open_actions]
    if not_open:
        raise CommandRefused(
            WAIVER_NOT_OPEN, "only open actions of the plan are waived, not " + ", ".join(not_open)
        )
    unfinished = [action_id for action_id in open_actions if action_id not in _ids(waived)]
    if unfinished:
        raise CommandRefused(
            UNFINISHED_ACTIONS,
            "a resolution is implemented once every action is completed or waived with a "
            "reason; still open: " + ", ".join(unfinished),
        )


def check_successor(successor_exists: bool | None) -> None:
    if not successor_exists:
        raise CommandRefused(
            SUCCESSOR_UNKNOWN, "a resolution is superseded only by one that has been passed"
        )


def _ids(waived: tuple[ActionWaiver, ...]) -> set[str]:
    return {waiver.action_id for waiver in waived}
