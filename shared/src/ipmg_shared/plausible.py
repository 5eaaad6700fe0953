"""Strict, plausible dates, instants and quarters for what clients send.

Commands and queries use these types; stored and published events keep their own lax ones, so
history already written stays readable. Each refusal carries a stable rule id (the pydantic
error type, or the ``rule`` of an :class:`ImplausibleDate`), which problem details repeat.

A date is only ever a ``YYYY-MM-DD`` string (never a number, never a date and time); an instant
is an RFC 3339 string with a time zone. Both lie in a fixed window from the IPMG's founding to
the end of the century, far from the years where date arithmetic overflows. Rules relative to
the clock (a past fact not in the future, a plan not too far ahead) take the command's time.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from pydantic import PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from ipmg_shared.domain import CommandRefused

FOUNDED_ON = date(2009, 4, 1)  # the IPMG was established then: no business date before it
LAST_ON = date(2099, 12, 31)  # no plan reaches further; far from date.max
FIRST_INSTANT = datetime(2009, 3, 31, 19, 0, tzinfo=UTC)  # 1 April 2009, 00:00 in Pakistan
LAST_INSTANT = datetime(2100, 1, 1, tzinfo=UTC)
SCHEDULE_HORIZON_YEARS = 5  # a meeting is scheduled at most this far ahead
DUE_HORIZON_YEARS = 10  # a feedback or action due date at most this far ahead
# The latest calendar day anywhere is UTC's plus 14 hours (UTC+14), so a fact dated on its own
# local day is never "in the future"; beyond that, a few minutes of clock skew are allowed.
LOCAL_DAY_AHEAD = timedelta(hours=14)
CLOCK_SKEW = timedelta(minutes=5)

DATE_FORMAT = "date.format"
DATE_BEFORE_FOUNDING = "date.before_founding"
DATE_BEYOND_WINDOW = "date.beyond_window"
DATE_IN_FUTURE = "date.in_future"
DATE_TOO_FAR_AHEAD = "date.too_far_ahead"
INSTANT_FORMAT = "instant.format"
INSTANT_BEFORE_FOUNDING = "instant.before_founding"
INSTANT_BEYOND_WINDOW = "instant.beyond_window"
QUARTER_FORMAT = "quarter.format"
QUARTER_OUT_OF_WINDOW = "quarter.out_of_window"

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_INSTANT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_QUARTER = re.compile(r"([0-9]{4})-Q([1-4])")


class ImplausibleDate(CommandRefused):
    """A date that is well-formed but implausible at the time of the command."""

    status = 422


def plausible_date(value: Any) -> date:
    """A ``YYYY-MM-DD`` string (or a ``date``) inside the window; nothing else."""
    if isinstance(value, date) and not isinstance(value, datetime):
        day = value
    elif isinstance(value, str) and _DATE.fullmatch(value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise _format_error(DATE_FORMAT, value, "is not a calendar date") from None
    else:
        raise _format_error(DATE_FORMAT, value, "is not a date written YYYY-MM-DD")
    if day < FOUNDED_ON:
        raise PydanticCustomError(
            DATE_BEFORE_FOUNDING,
            "{day} is before the IPMG was founded on {founded}",
            {"day": day.isoformat(), "founded": FOUNDED_ON.isoformat()},
        )
    if day > LAST_ON:
        raise PydanticCustomError(
            DATE_BEYOND_WINDOW,
            "{day} is after {last}, the latest date accepted",
            {"day": day.isoformat(), "last": LAST_ON.isoformat()},
        )
    return day


def plausible_instant(value: Any) -> datetime:
    """An RFC 3339 string with a time zone (or an aware ``datetime``) inside the window."""
    if isinstance(value, datetime):
        instant = value
    elif isinstance(value, str) and _INSTANT.fullmatch(value.strip()):
        try:
            instant = datetime.fromisoformat(value.strip().replace("z", "Z"))
        except ValueError:
            raise _format_error(INSTANT_FORMAT, value, "is not a valid date and time") from None
    else:
        raise _format_error(
            INSTANT_FORMAT, value, "is not a date and time with a zone, e.g. 2016-03-31T23:59Z"
        )
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise _format_error(INSTANT_FORMAT, value, "needs a time zone, e.g. 2016-03-31T23:59Z")
    if instant < FIRST_INSTANT:
        raise PydanticCustomError(
            INSTANT_BEFORE_FOUNDING,
            "{instant} is before the IPMG was founded on {founded}",
            {"instant": instant.isoformat(), "founded": FOUNDED_ON.isoformat()},
        )
    if instant >= LAST_INSTANT:
        raise PydanticCustomError(
            INSTANT_BEYOND_WINDOW,
            "{instant} is after {last}, the latest instant accepted",
            {"instant": instant.isoformat(), "last": LAST_ON.isoformat()},
        )
    return instant


def plausible_quarter(value: Any) -> str:
    """``YYYY-Qn`` for a year the IPMG can have met in."""
    match = _QUARTER.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _format_error(QUARTER_FORMAT, value, "is not a quarter written YYYY-Qn, e.g. 2016-Q1")
    if not FOUNDED_ON.year <= int(match[1]) <= LAST_ON.year:
        raise PydanticCustomError(
            QUARTER_OUT_OF_WINDOW,
            "{quarter} is outside the years {first} to {last}",
            {"quarter": value, "first": FOUNDED_ON.year, "last": LAST_ON.year},
        )
    return str(value)


def latest_local_day(at: datetime) -> date:
    """The latest calendar day anywhere on Earth at ``at``."""
    return (at.astimezone(UTC) + LOCAL_DAY_AHEAD + CLOCK_SKEW).date()


def require_past(day: date, at: datetime, field: str, rule: str = DATE_IN_FUTURE) -> None:
    """A past fact's date: not later than today anywhere, at the command's time ``at``."""
    if day > latest_local_day(at):
        raise ImplausibleDate(rule, f"{field}: {day} is in the future; a past fact is dated")


def require_within(day: date, at: datetime, years: int, field: str) -> None:
    """A planned date: at most ``years`` ahead of the command's time ``at``."""
    if day > _years_after(latest_local_day(at), years):
        raise ImplausibleDate(
            DATE_TOO_FAR_AHEAD, f"{field}: {day} is more than {years} years ahead"
        )


def _years_after(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _format_error(rule: str, value: Any, message: str) -> PydanticCustomError:
    shown = repr(value) if len(repr(value)) <= 60 else f"{repr(value)[:57]}..."
    return PydanticCustomError(rule, "{value} " + message, {"value": shown})


_DATE_SCHEMA = {
    "type": "string",
    "format": "date",
    "description": f"YYYY-MM-DD, from {FOUNDED_ON} to {LAST_ON}",
}
_INSTANT_SCHEMA = {
    "type": "string",
    "format": "date-time",
    "description": "RFC 3339 with a time zone, from the IPMG's founding to the year 2099",
}
_QUARTER_SCHEMA = {
    "type": "string",
    "pattern": r"^[0-9]{4}-Q[1-4]$",
    "examples": ["2016-Q1"],
    "description": f"YYYY-Qn, years {FOUNDED_ON.year} to {LAST_ON.year}",
}

PlausibleDate = Annotated[date, PlainValidator(plausible_date), WithJsonSchema(_DATE_SCHEMA)]
PlausibleInstant = Annotated[
    datetime, PlainValidator(plausible_instant), WithJsonSchema(_INSTANT_SCHEMA)
]
PlausibleQuarter = Annotated[
    str, PlainValidator(plausible_quarter), WithJsonSchema(_QUARTER_SCHEMA)
]
