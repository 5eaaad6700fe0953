"""How people name IPMG things: the quarter of a day and a resolution's reference.

One place for every service, so a notice, a report and the dashboard all say
``IPMG/2015-Q4/R1`` for the same resolution.
"""

from __future__ import annotations

from datetime import date, timedelta


def quarter_of(day: date) -> str:
    """The quarter a day falls in, written like ``2015-Q4``."""
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def quarter_end(quarter: str) -> date:
    """The last day of a quarter written like ``2016-Q1``."""
    year, number = int(quarter[:4]), int(quarter[-1])
    after = date(year + 1, 1, 1) if number == 4 else date(year, 3 * number + 1, 1)
    return after - timedelta(days=1)


def quarter_start(quarter: str) -> date:
    year, number = int(quarter[:4]), int(quarter[-1])
    return date(year, 3 * number - 2, 1)


def resolution_reference(passed_on: date, number: int) -> str:
    """The human reference of resolution ``number`` passed at a meeting held on ``passed_on``."""
    return f"IPMG/{quarter_of(passed_on)}/R{number}"
