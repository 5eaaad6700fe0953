"""A resolution's number is unique within its meeting; its reference names meeting and number."""

from __future__ import annotations

from datetime import date

import pytest

from ipmg_contracts.references import resolution_reference
from ipmg_resolutions.domain import ResolutionState, decide, fold
from ipmg_resolutions.numbering import NUMBER_TAKEN
from ipmg_shared.domain import CommandRefused
from tests.unit.resolutions.test_resolution_rules import PASSED, pass_


def test_a_number_already_passed_at_the_meeting_is_refused_by_its_reference() -> None:
    with pytest.raises(CommandRefused) as refused:
        decide(pass_(number=1, numbers_taken=(1, 2)), ResolutionState.initial())

    assert refused.value.rule == NUMBER_TAKEN
    assert "IPMG/2015-Q4/R1" in str(refused.value)


def test_a_free_number_at_the_meeting_is_passed() -> None:
    assert decide(pass_(number=3, numbers_taken=(1, 2)), ResolutionState.initial()) == [
        PASSED.model_copy(update={"number": 3})
    ]


def test_the_reference_names_the_quarter_of_the_meeting_and_the_number() -> None:
    assert PASSED.reference == "IPMG/2015-Q4/R1"
    assert fold([PASSED]).reference == "IPMG/2015-Q4/R1"
    assert resolution_reference(date(2016, 1, 1), 12) == "IPMG/2016-Q1/R12"
    assert resolution_reference(date(2016, 9, 30), 2) == "IPMG/2016-Q3/R2"
