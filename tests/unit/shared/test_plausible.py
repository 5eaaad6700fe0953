"""The strict, plausible input types: what a client may send as a date, instant or quarter."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from ipmg_shared.plausible import (
    FOUNDED_ON,
    LAST_ON,
    ImplausibleDate,
    PlausibleDate,
    PlausibleInstant,
    PlausibleQuarter,
    require_past,
    require_within,
)


class Query(BaseModel):
    on: PlausibleDate | None = None
    at: PlausibleInstant | None = None
    quarter: PlausibleQuarter | None = None


def refusal(**fields: Any) -> str:
    with pytest.raises(ValidationError) as refused:
        Query.model_validate(fields)
    return str(refused.value.errors()[0]["type"])


def refusal_from_json(text: str) -> str:
    with pytest.raises(ValidationError) as refused:
        Query.model_validate_json(text)
    return str(refused.value.errors()[0]["type"])


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ('{"on": 1448496000}', "date.format"),  # a Unix timestamp is not a date
        ('{"on": 1448496000.0}', "date.format"),
        ('{"on": "2015-11-26T00:00:00"}', "date.format"),  # nor a date and time
        ('{"on": "2015-11-26T00:00:00Z"}', "date.format"),
        ('{"on": "20151126"}', "date.format"),
        ('{"on": "2015-02-30"}', "date.format"),
        ('{"on": true}', "date.format"),
        ('{"on": "0001-01-01"}', "date.before_founding"),
        ('{"on": "2009-03-31"}', "date.before_founding"),
        ('{"on": "9999-12-31"}', "date.beyond_window"),
        ('{"on": "2100-01-01"}', "date.beyond_window"),
        ('{"at": -1}', "instant.format"),  # not 1969
        ('{"at": "-1"}', "instant.format"),
        ('{"at": "1448496000"}', "instant.format"),
        ('{"at": "2016-03-31T23:59:59"}', "instant.format"),  # no zone
        ('{"at": "2016-03-31"}', "instant.format"),
        ('{"at": "0001-01-01T00:00:00+14:00"}', "instant.before_founding"),
        ('{"at": "2009-03-31T18:59:59Z"}', "instant.before_founding"),
        ('{"at": "9999-12-31T23:59:59-14:00"}', "instant.beyond_window"),
        ('{"quarter": "2016-Q5"}', "quarter.format"),
        ('{"quarter": "2016-q1"}', "quarter.format"),
        ('{"quarter": 2016}', "quarter.format"),
        ('{"quarter": "0000-Q1"}', "quarter.out_of_window"),
        ('{"quarter": "9999-Q4"}', "quarter.out_of_window"),
        ('{"quarter": "2008-Q4"}', "quarter.out_of_window"),
    ],
)
def test_implausible_input_is_refused_naming_its_rule(body: str, rule: str) -> None:
    assert refusal_from_json(body) == rule


def test_a_date_and_time_object_is_not_a_date() -> None:
    assert refusal(on=datetime(2015, 11, 26, tzinfo=UTC)) == "date.format"


def test_a_naive_instant_object_is_refused() -> None:
    assert refusal(at=datetime(2016, 1, 1)) == "instant.format"


def test_plausible_input_is_read_as_written() -> None:
    query = Query.model_validate_json(
        '{"on": "2009-04-01", "at": "2016-03-31T23:59:59+05:00", "quarter": "2009-Q2"}'
    )
    assert query.on == FOUNDED_ON
    assert query.at == datetime(2016, 3, 31, 18, 59, 59, tzinfo=UTC)
    assert query.quarter == "2009-Q2"
    assert Query.model_validate({"on": date(2099, 12, 31)}).on == LAST_ON


@given(st.dates())
def test_every_date_is_accepted_exactly_inside_the_window(day: date) -> None:
    inside = FOUNDED_ON <= day <= LAST_ON
    try:
        assert Query.model_validate_json(f'{{"on": "{day.isoformat()}"}}').on == day
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == inside


@given(st.datetimes(timezones=st.timezones()))
def test_no_instant_overflows(instant: datetime) -> None:
    # Near year 1 and 9999 a zone shift leaves the range of datetime: refused, never raised.
    rules: list[str] = []
    try:
        Query.model_validate_json(f'{{"at": "{instant.isoformat()}"}}')
    except ValidationError as error:
        rules = [str(item["type"]) for item in error.errors()]
    assert all(rule.startswith("instant.") for rule in rules)


AT = datetime(2016, 1, 10, 9, 0, tzinfo=UTC)  # 23:00 in UTC+14


def test_a_past_fact_may_be_dated_today_anywhere_but_not_later() -> None:
    require_past(date(2016, 1, 10), AT, "signed_on")
    # At 10:00 UTC the 11th has begun in UTC+14.
    require_past(date(2016, 1, 11), AT + timedelta(hours=1), "signed_on")
    with pytest.raises(ImplausibleDate):
        require_past(date(2016, 1, 11), AT, "signed_on")
    with pytest.raises(ImplausibleDate) as refused:
        require_past(date(2016, 1, 12), AT, "signed_on")
    assert refused.value.rule == "date.in_future"
    assert refused.value.status == 422


def test_a_plan_reaches_only_so_many_years_ahead() -> None:
    require_within(date(2021, 1, 10), AT, 5, "scheduled_for")
    with pytest.raises(ImplausibleDate) as refused:
        require_within(date(2021, 1, 12), AT, 5, "scheduled_for")
    assert refused.value.rule == "date.too_far_ahead"


def test_a_plan_from_29_february_reaches_28_february() -> None:
    leap_day = datetime(2016, 2, 29, 0, 0, tzinfo=UTC)
    require_within(date(2021, 2, 28), leap_day, 5, "due_on")
    with pytest.raises(ImplausibleDate):
        require_within(date(2021, 3, 1), leap_day, 5, "due_on")
