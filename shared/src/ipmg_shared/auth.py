"""Bearer tokens (JWT) carrying subject, unit and role; FastAPI dependencies for them.

Tokens are HS256, signed with the deployment's own key (``ipmg token issue``), or RS256/ES256
from an identity provider, verified against its JWKS. Either way a service accepts a token
only when its ``aud`` names the service (``ipmg-<service>``; a token may name several), its
lifetime is within the cap, and its ``jti`` is not revoked.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from ipmg_shared.actors import Actor, Role, Unit
from ipmg_shared.revocation import RevocationList
from ipmg_shared.settings import SERVICES, Settings

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "unit", "role", "exp", "iat", "iss", "aud", "jti"]
JWKS_CACHE_S = 300


def audience_of(service: str) -> str:
    return f"ipmg-{service}"


ALL_AUDIENCES = tuple(audience_of(service) for service in SERVICES)


class AuthenticationFailed(Exception):
    """No token, a bad signature, an expired or revoked token or missing claims: 401."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Forbidden(Exception):
    """A valid token whose role may not do this: 403 (``rule``: the policy's rule, if named)."""

    def __init__(self, reason: str, rule: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rule = rule


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime
    audiences: tuple[str, ...]


def mint_token(
    settings: Settings,
    *,
    subject: str,
    unit: Unit,
    role: Role,
    ttl: timedelta = timedelta(hours=8),
    now: datetime | None = None,
    audiences: Iterable[str] = ALL_AUDIENCES,
) -> IssuedToken:
    issued = now or datetime.now(UTC)
    jti = str(uuid.uuid4())
    chosen = tuple(audiences)
    claims = {
        "sub": subject,
        "unit": unit.value,
        "role": role.value,
        "iat": issued,
        "exp": issued + ttl,
        "iss": settings.jwt_issuer,
        "aud": list(chosen),
        "jti": jti,
    }
    token = jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)
    return IssuedToken(token, jti, issued + ttl, chosen)


def issue_token(
    settings: Settings,
    *,
    subject: str,
    unit: Unit,
    role: Role,
    ttl: timedelta = timedelta(hours=8),
    now: datetime | None = None,
    audiences: Iterable[str] = ALL_AUDIENCES,
) -> str:
    return mint_token(
        settings, subject=subject, unit=unit, role=role, ttl=ttl, now=now, audiences=audiences
    ).token


@dataclass(frozen=True)
class Verified:
    actor: Actor
    jti: str
    expires_at: float


class TokenVerifier:
    """Checks tokens for one service: signature, issuer, audience, lifetime cap, revocation."""

    def __init__(
        self, settings: Settings, service: str, revocations: RevocationList | None
    ) -> None:
        self.settings = settings
        self.audience = audience_of(service)
        self.revocations = revocations
        self._jwks = (
            jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=JWKS_CACHE_S, timeout=10)
            if settings.jwks_url
            else None
        )

    async def verify(self, token: str) -> Verified:
        algorithm = _algorithm_of(token)
        if algorithm == ALGORITHM:
            verified = _verified_hs256(
                token,
                self.settings.jwt_secret.get_secret_value(),
                self.settings.jwt_issuer,
                self.audience,
                self.settings.token_max_lifetime_hours,
            )
        elif self._jwks is not None and algorithm in self.settings.jwks_algorithms:
            key = await self._signing_key(token)
            verified = _decoded(
                token,
                key,
                algorithm,
                self.settings.jwks_issuer,
                self.audience,
                self.settings.token_max_lifetime_hours,
            )
        else:
            raise AuthenticationFailed(f"tokens signed with {algorithm!r} are not accepted")
        if verified.expires_at <= time.time():  # a token checked before may have expired since
            raise AuthenticationFailed("the token has expired")
        if self.revocations is not None and await self.revocations.is_revoked(verified.jti):
            raise AuthenticationFailed("the token has been revoked")
        return verified

    async def actor(self, token: str) -> Actor:
        return (await self.verify(token)).actor

    async def _signing_key(self, token: str) -> Any:
        assert self._jwks is not None
        try:  # the JWKS is fetched (rarely: it is cached) by a blocking client
            found = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError as error:
            unreachable = f"the identity provider's keys are unreachable: {error}"
            raise ConnectionError(unreachable) from error
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as error:
            raise AuthenticationFailed(f"the token's key is not known: {error}") from error
        return found.key


def _algorithm_of(token: str) -> str:
    try:
        algorithm = jwt.get_unverified_header(token).get("alg")
    except jwt.InvalidTokenError as error:
        raise AuthenticationFailed(f"the token is not valid: {error}") from error
    return str(algorithm)


# A client sends the same token with every request until it expires: an HS256 token's
# signature and claims are checked once, then only its expiry and revocation. A token that
# fails is not remembered (an exception is never cached); key, issuer and audience are part
# of the cache key.
@functools.lru_cache(maxsize=4096)
def _verified_hs256(
    token: str, secret: str, issuer: str, audience: str, max_lifetime_hours: float
) -> Verified:
    return _decoded(token, secret, ALGORITHM, issuer, audience, max_lifetime_hours)


def _decoded(
    token: str, key: Any, algorithm: str, issuer: str, audience: str, max_lifetime_hours: float
) -> Verified:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            issuer=issuer,
            audience=audience,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as error:
        raise AuthenticationFailed("the token has expired") from error
    except jwt.MissingRequiredClaimError as error:
        raise AuthenticationFailed(f"the token lacks the {error.claim!r} claim") from error
    except jwt.InvalidAudienceError as error:
        raise AuthenticationFailed(f"the token is not meant for {audience}") from error
    except jwt.InvalidTokenError as error:
        raise AuthenticationFailed(f"the token is not valid: {error}") from error
    lifetime_s = float(claims["exp"]) - float(claims["iat"])
    if lifetime_s > max_lifetime_hours * 3600:
        raise AuthenticationFailed(
            f"the token's lifetime exceeds the maximum of {max_lifetime_hours:g} hours"
        )
    try:
        actor = Actor(subject=claims["sub"], unit=claims["unit"], role=claims["role"])
    except ValidationError as error:
        raise AuthenticationFailed("the token names an unknown unit or role") from error
    return Verified(actor, str(claims["jti"]), float(claims["exp"]))


def token_verifier(app: FastAPI) -> TokenVerifier:
    """The running service's verifier, made on first use (its pool exists by then)."""
    verifier = getattr(app.state, "token_verifier", None)
    if verifier is None:
        context = app.state.context
        revocations = RevocationList(context.pool, context.settings)
        verifier = TokenVerifier(context.settings, context.name, revocations)
        app.state.token_verifier = verifier
    assert isinstance(verifier, TokenVerifier)
    return verifier


_bearer = HTTPBearer(auto_error=False)


async def current_actor(  # async: FastAPI would run a plain def in a worker thread per request
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    if credentials is None:
        raise AuthenticationFailed("a bearer token is required")
    return await token_verifier(request.app).actor(credentials.credentials)


CurrentActor = Annotated[Actor, Depends(current_actor)]
