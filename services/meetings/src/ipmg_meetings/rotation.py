"""One ordinary meeting a quarter, hosted in turn: the rotation and the calendar rules.

Pure: the calendar (the other meetings this service holds, not cancelled) arrives on the
command; ``check_calendar`` refuses a meeting that breaks the rules, or says who was due to host.
"""

from __future__ import annotations

from datetime import date
from uuid import UUID

from ipmg_contracts.meetings import ValueObject
from ipmg_contracts.references import quarter_of
from ipmg_shared.actors import Unit
from ipmg_shared.domain import CommandRefused

# The order in which units host; a new order gets a new version, recorded on each meeting.
ROTATION_VERSION = "2015-11"
ROTATION_ORDER: tuple[Unit, ...] = (
    Unit.AJK,
    Unit.PUNJAB,
    Unit.SINDH,
    Unit.KHYBER_PAKHTUNKHWA,
    Unit.BALOCHISTAN,
    Unit.GILGIT_BALTISTAN,
    Unit.NCSW,
)

DUPLICATE = "meeting.schedule.duplicate"
SECOND_IN_QUARTER = "meeting.schedule.second_ordinary_in_quarter"
OUT_OF_TURN = "meeting.schedule.out_of_turn"
EXTRAORDINARY_WITHOUT_REASON = "meeting.schedule.extraordinary_without_reason"


class CalendarEntry(ValueObject):
    """Another meeting that is scheduled or held (cancelled ones are left out)."""

    meeting_id: UUID
    on: date
    host_unit: Unit
    venue: str
    extraordinary: bool = False


Calendar = tuple[CalendarEntry, ...]


def expected_host(calendar: Calendar, on: date) -> Unit | None:
    """The unit after the host of the last ordinary meeting before ``on``; None at the start."""
    earlier = [entry for entry in calendar if not entry.extraordinary and entry.on < on]
    if not earlier:
        return None
    last = max(earlier, key=lambda entry: entry.on).host_unit
    if last not in ROTATION_ORDER:
        return None
    return ROTATION_ORDER[(ROTATION_ORDER.index(last) + 1) % len(ROTATION_ORDER)]


def check_calendar(
    meeting_id: UUID,
    on: date,
    host_unit: Unit,
    venue: str,
    calendar: Calendar,
    *,
    extraordinary: bool,
    reason: str | None,
) -> Unit | None:
    """Refuse a meeting the calendar does not allow; return the host that was due."""
    others = [entry for entry in calendar if entry.meeting_id != meeting_id]
    if extraordinary and reason is None:
        raise CommandRefused(
            EXTRAORDINARY_WITHOUT_REASON, "an extraordinary meeting needs a recorded reason"
        )
    for entry in others:
        if (entry.on, entry.host_unit, entry.venue) == (on, host_unit, venue):
            raise CommandRefused(
                DUPLICATE,
                f"meeting {entry.meeting_id} is already on {on} hosted by {host_unit} at {venue}",
            )
    quarter = quarter_of(on)
    if not extraordinary:
        for entry in others:
            if not entry.extraordinary and quarter_of(entry.on) == quarter:
                raise CommandRefused(
                    SECOND_IN_QUARTER,
                    f"meeting {entry.meeting_id} is the ordinary meeting of {quarter}; "
                    "another needs extraordinary and a reason",
                )
    due = expected_host(tuple(others), on)
    if due is not None and host_unit is not due and not extraordinary:
        raise CommandRefused(
            OUT_OF_TURN,
            f"{due} is due to host after the last ordinary meeting (rotation "
            f"{ROTATION_VERSION}); another host needs extraordinary and a reason",
        )
    return due
