"""Reporting behind a TLS proxy: `X-Forwarded-Proto` is believed only from the addresses in
IPMG_TRUSTED_PROXIES, so the sign-in's origin check and the cookie's Secure flag follow the
proxy's https there, and a forged header from anywhere else changes nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ipmg_shared.settings import Settings
from tests.integration.reporting.system import isolated, migrate_reporting, reader_token
from tests.support.processes import running_service

pytestmark = pytest.mark.infra


def sign_in(url: str, token: str) -> httpx.Response:
    host = url.removeprefix("http://")
    return httpx.post(
        f"{url}/sign-in",
        data={"token": token},
        headers={"Origin": f"https://{host}", "X-Forwarded-Proto": "https"},
        timeout=10,
    )


@pytest.mark.parametrize(("trusted", "believed"), [("127.0.0.1", True), ("192.0.2.7", False)])
async def test_forwarded_headers_are_believed_only_from_trusted_proxies(
    postgres: Settings, kafka: Settings, tmp_path: Path, trusted: str, believed: bool
) -> None:
    settings = await isolated(kafka)
    await migrate_reporting(settings)
    environment = {"IPMG_TRUSTED_PROXIES": trusted, "IPMG_DASHBOARD_COOKIE_SECURE": "false"}
    with running_service("reporting", settings, tmp_path, **environment) as reporting:
        reporting.wait_ready()
        answer = sign_in(reporting.url, reader_token(settings))
    if believed:
        assert answer.status_code == 303
        flags = {part.strip().lower() for part in answer.headers["set-cookie"].split(";")}
        assert {"secure", "httponly", "samesite=strict"} <= flags
    else:  # the request stays http: an https origin is another site's
        assert answer.status_code == 403
        assert "set-cookie" not in answer.headers
