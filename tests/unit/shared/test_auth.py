"""Bearer tokens: checked once, remembered, and still refused once expired; refused over the
lifetime cap, for another service's audience, or signed by a key no one trusts; accepted from
an identity provider's JWKS."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr

from ipmg_shared import auth
from ipmg_shared.actors import Role, Unit
from ipmg_shared.auth import AuthenticationFailed, TokenVerifier, audience_of, issue_token
from ipmg_shared.settings import SERVICES, Settings

SETTINGS = Settings(jwt_secret=SecretStr("a-test-signing-key-of-enough-length-0123"))
IDP_ISSUER = "https://sign-in.ncsw.example.org"


def verifier(settings: Settings = SETTINGS, service: str = "meetings") -> TokenVerifier:
    return TokenVerifier(settings, service, revocations=None)


def focal_token(**options: Any) -> str:
    return issue_token(
        SETTINGS, subject="focal@punjab.gov.pk", unit=Unit.PUNJAB, role=Role.FOCAL_PERSON, **options
    )


async def test_a_remembered_token_is_refused_once_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = focal_token(ttl=timedelta(minutes=5))
    actor = await verifier().actor(token)
    assert (actor.subject, actor.unit, actor.role) == (
        "focal@punjab.gov.pk",
        Unit.PUNJAB,
        Role.FOCAL_PERSON,
    )
    assert await verifier().actor(token) == actor  # remembered

    later = time.time() + 301
    monkeypatch.setattr(auth, "time", SimpleNamespace(time=lambda: later))
    with pytest.raises(AuthenticationFailed, match="expired"):
        await verifier().actor(token)


async def test_a_token_is_checked_against_the_key_it_is_presented_with() -> None:
    token = focal_token()
    assert (await verifier().actor(token)).unit is Unit.PUNJAB
    rotated = Settings(jwt_secret=SecretStr("another-signing-key-of-enough-length-456"))
    for _ in range(2):  # a refusal is not remembered as anything else either
        with pytest.raises(AuthenticationFailed, match="not valid"):
            await verifier(rotated).actor(token)


async def test_an_expired_token_is_refused_the_first_time_too() -> None:
    token = focal_token(now=datetime.now(UTC) - timedelta(hours=9))
    with pytest.raises(AuthenticationFailed, match="expired"):
        await verifier().actor(token)


@pytest.mark.parametrize("service", SERVICES)
async def test_a_token_over_the_lifetime_cap_is_refused_though_signed_with_the_right_key(
    service: str,
) -> None:
    century = focal_token(ttl=timedelta(days=365 * 100))
    with pytest.raises(AuthenticationFailed, match="lifetime exceeds the maximum of 720 hours"):
        await verifier(service=service).actor(century)
    assert (await verifier().actor(focal_token(ttl=timedelta(hours=720)))).unit is Unit.PUNJAB
    stricter = SETTINGS.model_copy(update={"token_max_lifetime_hours": 8.0})
    with pytest.raises(AuthenticationFailed, match="maximum of 8 hours"):
        await verifier(stricter).actor(focal_token(ttl=timedelta(hours=9)))


async def test_a_token_for_one_services_audience_is_refused_by_another() -> None:
    for_meetings = focal_token(audiences=[audience_of("meetings")])
    assert (await verifier(service="meetings").actor(for_meetings)).unit is Unit.PUNJAB
    for service in ("resolutions", "notifications", "reporting"):
        with pytest.raises(AuthenticationFailed, match=f"not meant for ipmg-{service}"):
            await verifier(service=service).actor(for_meetings)
    both = focal_token(audiences=[audience_of("meetings"), audience_of("reporting")])
    for service in ("meetings", "reporting"):
        assert (await verifier(service=service).actor(both)).unit is Unit.PUNJAB


async def test_every_issued_token_has_its_own_id() -> None:
    first, second = focal_token(), focal_token()
    ids = {jwt.decode(t, options={"verify_signature": False})["jti"] for t in (first, second)}
    assert len(ids) == 2
    assert all(uuid.UUID(jti) for jti in ids)


async def test_an_unsigned_token_is_refused() -> None:
    claims = jwt.decode(focal_token(), options={"verify_signature": False})
    unsigned = jwt.encode(claims, "", algorithm="none")
    with pytest.raises(AuthenticationFailed, match="'none' are not accepted"):
        await verifier().actor(unsigned)


# --- tokens from an identity provider, verified against its JWKS on loopback -----------------


class Jwks:
    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.requests = 0

    def document(self) -> bytes:
        keys = [
            {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key())), "kid": "r1"},
            {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key())), "kid": "e1"},
        ]
        for key, algorithm in zip(keys, ("RS256", "ES256"), strict=True):
            key |= {"use": "sig", "alg": algorithm}
        return json.dumps({"keys": keys}).encode()


@pytest.fixture
def identity_provider() -> Iterator[tuple[Jwks, str]]:
    jwks = Jwks()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            jwks.requests += 1
            body = jwks.document()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield jwks, f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def idp_claims(**changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims = {
        "sub": "staff@ncsw.gov.pk",
        "unit": "ncsw",
        "role": "secretariat",
        "iat": now,
        "exp": now + timedelta(hours=1),
        "iss": IDP_ISSUER,
        "aud": ["ipmg-meetings", "ipmg-reporting"],
        "jti": str(uuid.uuid4()),
    }
    return claims | changes


async def test_an_identity_providers_rs256_and_es256_tokens_are_accepted_from_its_jwks(
    identity_provider: tuple[Jwks, str],
) -> None:
    jwks, url = identity_provider
    settings = SETTINGS.model_copy(update={"jwks_url": url, "jwks_issuer": IDP_ISSUER})
    check = verifier(settings)
    rs256 = jwt.encode(idp_claims(), jwks.rsa, algorithm="RS256", headers={"kid": "r1"})
    es256 = jwt.encode(idp_claims(), jwks.ec, algorithm="ES256", headers={"kid": "e1"})
    for token in (rs256, es256):
        actor = await check.actor(token)
        assert (actor.subject, actor.unit, actor.role) == (
            "staff@ncsw.gov.pk",
            Unit.NCSW,
            Role.SECRETARIAT,
        )
    assert jwks.requests == 1  # the key set is cached
    # The local HS256 tokens still work beside them.
    assert (await check.actor(focal_token())).unit is Unit.PUNJAB


async def test_a_token_signed_by_another_key_or_issuer_is_refused(
    identity_provider: tuple[Jwks, str],
) -> None:
    jwks, url = identity_provider
    settings = SETTINGS.model_copy(update={"jwks_url": url, "jwks_issuer": IDP_ISSUER})
    check = verifier(settings)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(idp_claims(), stranger, algorithm="RS256", headers={"kid": "r1"})
    with pytest.raises(AuthenticationFailed, match="Signature verification failed"):
        await check.actor(forged)
    unknown_kid = jwt.encode(idp_claims(), stranger, algorithm="RS256", headers={"kid": "x9"})
    with pytest.raises(AuthenticationFailed, match="key is not known"):
        await check.actor(unknown_kid)
    other_issuer = jwt.encode(
        idp_claims(iss="https://elsewhere.example.org"),
        jwks.rsa,
        algorithm="RS256",
        headers={"kid": "r1"},
    )
    with pytest.raises(AuthenticationFailed, match="issuer"):
        await check.actor(other_issuer)
    long_lived = idp_claims(exp=datetime.now(UTC) + timedelta(days=3650))
    too_long = jwt.encode(long_lived, jwks.rsa, algorithm="RS256", headers={"kid": "r1"})
    with pytest.raises(AuthenticationFailed, match="lifetime exceeds"):
        await check.actor(too_long)
    wrong_audience = jwt.encode(
        idp_claims(aud="ipmg-reporting"), jwks.rsa, algorithm="RS256", headers={"kid": "r1"}
    )
    with pytest.raises(AuthenticationFailed, match="not meant for ipmg-meetings"):
        await check.actor(wrong_audience)


async def test_without_a_jwks_asymmetric_tokens_are_refused(
    identity_provider: tuple[Jwks, str],
) -> None:
    jwks, _ = identity_provider
    token = jwt.encode(idp_claims(), jwks.rsa, algorithm="RS256", headers={"kid": "r1"})
    with pytest.raises(AuthenticationFailed, match="'RS256' are not accepted"):
        await verifier().actor(token)


async def test_an_unreachable_identity_provider_is_unavailability_not_a_bad_token(
    identity_provider: tuple[Jwks, str],
) -> None:
    jwks, _ = identity_provider
    with socket.socket() as closed:  # a loopback port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"http://127.0.0.1:{port}/jwks.json"
    settings = SETTINGS.model_copy(update={"jwks_url": url, "jwks_issuer": IDP_ISSUER})
    token = jwt.encode(idp_claims(), jwks.rsa, algorithm="RS256", headers={"kid": "r1"})
    with pytest.raises(ConnectionError, match="identity provider's keys are unreachable"):
        await verifier(settings).actor(token)
