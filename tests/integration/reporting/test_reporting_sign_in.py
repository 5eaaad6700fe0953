"""The dashboard's browser path, and the token checks of a running service over HTTP: a token
is posted (never put in an address) from the dashboard's own origin, kept in a Secure HttpOnly
cookie that lives as long as the token, and dropped by signing out; a token over the lifetime
cap, for another service or revoked is refused."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from ipmg_shared.actors import Role, Unit
from ipmg_shared.auth import audience_of, issue_token, mint_token
from ipmg_shared.settings import Settings
from ipmg_shared.token_cli import revoke_everywhere
from tests.integration.reporting.system import isolated, migrate_reporting, running_reporting

ORIGIN = {"Origin": "http://reporting"}


def token(settings: Settings, **options: object) -> str:
    return issue_token(
        settings,
        subject="focal@punjab.gov.pk",
        unit=Unit.PUNJAB,
        role=Role.FOCAL_PERSON,
        **options,  # type: ignore[arg-type]
    )


async def test_sign_in_is_a_post_from_the_dashboards_origin_into_a_secure_cookie(
    postgres: Settings, kafka: Settings
) -> None:
    settings = await isolated(kafka)
    await migrate_reporting(settings)
    async with running_reporting(settings) as reporting:
        client = reporting.client
        focal = token(settings, ttl=timedelta(hours=2))

        in_address = await client.get("/", params={"token": focal})
        assert in_address.status_code == 400
        assert "set-cookie" not in in_address.headers
        assert 'method="post" action="/sign-in"' in in_address.text

        for headers in (
            {},
            {"Origin": "https://elsewhere.example.org"},
            {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
            {"Origin": "https://elsewhere.example.org", "Sec-Fetch-Site": "same-origin"},
        ):
            refused = await client.post("/sign-in", data={"token": focal}, headers=headers)
            assert refused.status_code == 403
            assert "set-cookie" not in refused.headers

        bad = await client.post("/sign-in", data={"token": "not-a-token"}, headers=ORIGIN)
        assert bad.status_code == 401
        assert "set-cookie" not in bad.headers

        # A browser's form on a no-referrer page: Origin null, and where it came from.
        from_page = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
        assert (await client.post("/sign-in", data={"token": focal}, headers=from_page)).is_redirect
        signed_in = await client.post("/sign-in", data={"token": focal}, headers=ORIGIN)
        assert signed_in.status_code == 303
        cookie = signed_in.headers["set-cookie"]
        flags = [part.strip().lower() for part in cookie.split(";")]
        assert flags[0] == f"ipmg_token={focal}".lower()
        assert {"httponly", "secure", "samesite=strict", "path=/"} <= set(flags)
        (max_age,) = [int(flag.split("=")[1]) for flag in flags if flag.startswith("max-age=")]
        assert 2 * 3600 - 60 <= max_age <= 2 * 3600

        client.cookies.set("ipmg_token", focal)
        page = await client.get("/")
        assert page.status_code == 200
        assert 'action="/sign-out"' in page.text

        foreign_sign_out = await client.post("/sign-out", headers={"Origin": "http://evil"})
        assert foreign_sign_out.status_code == 403
        signed_out = await client.post("/sign-out", headers=ORIGIN)
        assert signed_out.status_code == 303
        assert signed_out.headers["set-cookie"].startswith('ipmg_token=""')
        assert "max-age=0" in signed_out.headers["set-cookie"].lower()


async def test_a_running_service_refuses_long_foreign_and_revoked_tokens(
    postgres: Settings, kafka: Settings
) -> None:
    settings = await isolated(kafka)
    settings = settings.model_copy(update={"token_revocation_refresh_s": 0.2})
    await migrate_reporting(settings)
    async with running_reporting(settings) as reporting:
        client = reporting.client

        async def status(bearer: str) -> int:
            answer = await client.get(
                "/reports/meetings", headers={"Authorization": f"Bearer {bearer}"}
            )
            return answer.status_code

        assert await status(token(settings)) == 200
        assert await status(token(settings, ttl=timedelta(days=365 * 100))) == 401
        assert await status(token(settings, audiences=[audience_of("meetings")])) == 401
        assert await status(token(settings, audiences=[audience_of("reporting")])) == 200

        issued = mint_token(
            settings, subject="gone@ncsw.gov.pk", unit=Unit.NCSW, role=Role.SECRETARIAT
        )
        assert await status(issued.token) == 200
        await revoke_everywhere(settings, ["reporting"], issued.jti, "left the secretariat")
        await asyncio.sleep(0.5)
        refused = await client.get(
            "/reports/meetings", headers={"Authorization": f"Bearer {issued.token}"}
        )
        assert refused.status_code == 401
        assert refused.json()["detail"] == "the token has been revoked"
        # The cookie path is checked the same way.
        client.cookies.set("ipmg_token", issued.token)
        assert (await client.get("/")).status_code == 401
        signed_in = await client.post("/sign-in", data={"token": issued.token}, headers=ORIGIN)
        assert signed_in.status_code == 401
        assert "set-cookie" not in signed_in.headers
