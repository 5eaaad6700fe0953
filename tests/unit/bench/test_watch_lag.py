"""The watch benchmark's lag: how long after the relay published a position it was verified."""

from __future__ import annotations

from bench.watch import lags


def test_lag_is_taken_from_the_first_sample_where_the_relay_had_published_the_position() -> None:
    published = [(0.000, 0), (0.010, 100), (0.020, 200), (0.030, 200)]
    verified = [(0.000, 0), (0.010, 0), (0.020, 100), (0.030, 150), (0.040, 200)]
    found = lags(published, verified)
    # 100: published at 10 ms, verified at 20 ms; 150 and 200: published at 20 ms.
    assert found == {"median": 10.0, "p99": 10.0, "max": 20.0, "samples": 3}
