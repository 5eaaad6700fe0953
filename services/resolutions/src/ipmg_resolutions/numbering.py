"""A resolution's number is unique within its meeting; its reference is what people read.

Pure: the numbers already passed at the meeting arrive on the command.
"""

from __future__ import annotations

from collections.abc import Collection

from ipmg_shared.domain import CommandRefused

NUMBER_TAKEN = "resolution.pass.number_taken"


def check_number(number: int, taken: Collection[int], reference: str) -> None:
    if number in taken:
        raise CommandRefused(
            NUMBER_TAKEN, f"{reference} was already passed at this meeting; give another number"
        )
