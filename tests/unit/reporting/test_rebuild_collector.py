"""The rebuild holds the cyclic garbage collector back while it folds, and only then."""

from __future__ import annotations

import gc

import pytest

from ipmg_reporting.rebuild import collecting_rarely


def test_the_collector_thresholds_are_raised_while_folding_and_restored_after() -> None:
    before = gc.get_threshold()

    with collecting_rarely():
        assert gc.get_threshold()[0] >= 100 * before[0]
        assert gc.isenabled()  # held back, never switched off
    assert gc.get_threshold() == before

    with pytest.raises(RuntimeError), collecting_rarely():
        raise RuntimeError("a failed rebuild")
    assert gc.get_threshold() == before
