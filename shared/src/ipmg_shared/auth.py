"""Bearer tokens (JWT, HS256) carrying subject, unit and role; FastAPI dependencies for them."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from ipmg_shared.actors import Actor, Role, Unit
from ipmg_shared.settings import Settings

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "unit", "role", "exp", "iat", "iss"]


class AuthenticationFailed(Exception):
    """No token, a bad signature, an expired token or missing claims: 401."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Forbidden(Exception):
    """A valid token whose role may not do this: 403 (``rule``: the policy's rule, if named)."""

    def __init__(self, reason: str, rule: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rule = rule


def issue_token(
    settings: Settings,
    *,
    subject: str,
    unit: Unit,
    role: Role,
    ttl: timedelta = timedelta(hours=8),
    now: datetime | None = None,
) -> str:
    issued = now or datetime.now(UTC)
    claims = {
        "sub": subject,
        "unit": unit.value,
        "role": role.value,
        "iat": issued,
        "exp": issued + ttl,
        "iss": settings.jwt_issuer,
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)


def actor_from_token(settings: Settings, token: str) -> Actor:
    actor, expires_at = _verified(
        token, settings.jwt_secret.get_secret_value(), settings.jwt_issuer
    )
    if expires_at <= time.time():  # a token checked before may have expired since
        raise AuthenticationFailed("the token has expired")
    return actor


# A client sends the same token with every request until it expires: its signature and claims
# are checked once, and only its expiry again. A token that fails is not remembered (an
# exception is never cached), and the key and issuer are part of the key.
@functools.lru_cache(maxsize=4096)
def _verified(token: str, secret: str, issuer: str) -> tuple[Actor, float]:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=issuer,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as error:
        raise AuthenticationFailed("the token has expired") from error
    except jwt.MissingRequiredClaimError as error:
        raise AuthenticationFailed(f"the token lacks the {error.claim!r} claim") from error
    except jwt.InvalidTokenError as error:
        raise AuthenticationFailed(f"the token is not valid: {error}") from error
    try:
        actor = Actor(subject=claims["sub"], unit=claims["unit"], role=claims["role"])
    except ValidationError as error:
        raise AuthenticationFailed("the token names an unknown unit or role") from error
    return actor, float(claims["exp"])


_bearer = HTTPBearer(auto_error=False)


async def current_actor(  # async: FastAPI would run a plain def in a worker thread per request
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    if credentials is None:
        raise AuthenticationFailed("a bearer token is required")
    settings: Settings = request.app.state.settings
    return actor_from_token(settings, credentials.credentials)


CurrentActor = Annotated[Actor, Depends(current_actor)]
