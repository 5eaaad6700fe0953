"""Bearer tokens: checked once, remembered, and still refused once expired."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from pydantic import SecretStr

from ipmg_shared import auth
from ipmg_shared.actors import Role, Unit
from ipmg_shared.auth import AuthenticationFailed, actor_from_token, issue_token
from ipmg_shared.settings import Settings

SETTINGS = Settings(jwt_secret=SecretStr("a-test-signing-key-of-enough-length-0123"))


def test_a_remembered_token_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    token = issue_token(
        SETTINGS,
        subject="focal@punjab.gov.pk",
        unit=Unit.PUNJAB,
        role=Role.FOCAL_PERSON,
        ttl=timedelta(minutes=5),
    )
    actor = actor_from_token(SETTINGS, token)
    assert (actor.subject, actor.unit, actor.role) == (
        "focal@punjab.gov.pk",
        Unit.PUNJAB,
        Role.FOCAL_PERSON,
    )
    assert actor_from_token(SETTINGS, token) == actor  # remembered

    later = time.time() + 301
    monkeypatch.setattr(auth, "time", SimpleNamespace(time=lambda: later))
    with pytest.raises(AuthenticationFailed, match="expired"):
        actor_from_token(SETTINGS, token)


def test_a_token_is_checked_against_the_key_it_is_presented_with() -> None:
    token = issue_token(
        SETTINGS, subject="staff@ncsw.gov.pk", unit=Unit.NCSW, role=Role.SECRETARIAT
    )
    assert actor_from_token(SETTINGS, token).unit is Unit.NCSW
    rotated = Settings(jwt_secret=SecretStr("another-signing-key-of-enough-length-456"))
    for _ in range(2):  # a refusal is not remembered as anything else either
        with pytest.raises(AuthenticationFailed, match="not valid"):
            actor_from_token(rotated, token)


def test_an_expired_token_is_refused_the_first_time_too() -> None:
    token = issue_token(
        SETTINGS,
        subject="staff@ncsw.gov.pk",
        unit=Unit.NCSW,
        role=Role.SECRETARIAT,
        now=datetime.now(UTC) - timedelta(hours=9),
    )
    with pytest.raises(AuthenticationFailed, match="expired"):
        actor_from_token(SETTINGS, token)
