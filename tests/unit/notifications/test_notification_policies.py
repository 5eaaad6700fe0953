"""Retry backoff with jitter, the stale horizon for replays, and the service's settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ipmg_notifications.domain import RetryPolicy, is_stale, retry_delay
from ipmg_notifications.settings import NotificationSettings

POLICY = RetryPolicy(max_attempts=5, base_s=2.0, max_s=300.0)


def test_delays_double_from_the_base_and_never_come_early() -> None:
    assert [retry_delay(POLICY, attempts, 0.0) for attempts in (1, 2, 3, 4)] == [
        1.0,
        2.0,
        4.0,
        8.0,
    ]
    assert [retry_delay(POLICY, attempts, 0.999999) for attempts in (1, 2)] == pytest.approx(
        [2.0, 4.0]
    )
    assert retry_delay(POLICY, 30, 0.5) <= POLICY.max_s


def test_a_delivery_gives_up_after_its_last_attempt() -> None:
    assert not POLICY.gives_up_after(4)
    assert POLICY.gives_up_after(5)


@given(
    attempts=st.integers(min_value=1, max_value=1000),
    jitter=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    base=st.floats(min_value=0.001, max_value=60.0),
    ceiling=st.floats(min_value=60.0, max_value=3600.0),
)
def test_every_delay_lies_in_the_upper_half_of_its_bounded_ceiling(
    attempts: int, jitter: float, base: float, ceiling: float
) -> None:
    policy = RetryPolicy(max_attempts=10, base_s=base, max_s=ceiling)
    delay = retry_delay(policy, attempts, jitter)
    bound = min(ceiling, base * 2.0 ** min(attempts - 1, 60))
    assert bound / 2 <= delay <= bound
    assert retry_delay(policy, attempts + 1, jitter) >= delay


def test_an_event_recorded_beyond_the_horizon_is_history_not_news() -> None:
    now = datetime(2016, 1, 20, tzinfo=UTC)
    horizon = timedelta(days=7)
    assert not is_stale(now - timedelta(days=6, hours=23), now, horizon)
    assert is_stale(now - timedelta(days=7, seconds=1), now, horizon)


def test_settings_read_the_environment_with_their_own_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IPMG_NOTIFICATIONS_SMTP_PORT", "2525")
    monkeypatch.setenv("IPMG_NOTIFICATIONS_REMINDER_LEAD_DAYS", "5")
    settings = NotificationSettings()
    assert (settings.smtp_port, settings.reminder_lead_days) == (2525, 5)


@pytest.mark.parametrize(
    "values",
    [
        {"retry_base_s": 10.0, "retry_max_s": 5.0},
        {"lease_s": 5.0, "smtp_timeout_s": 10.0},
        {"max_attempts": 0},
    ],
)
def test_inconsistent_settings_are_refused(values: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        NotificationSettings(**values)  # type: ignore[arg-type]
