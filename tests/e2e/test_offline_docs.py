"""``/docs`` of every service works without the internet: the page names no other host, its
assets are served by the service itself, and its policy allows no other origin."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.async_api import Route, async_playwright

from ipmg_shared.settings import Settings
from tests.e2e.reporting.test_reporting_dashboard_browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.processes import ServiceProcess, running_service

pytestmark = pytest.mark.infra

REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.fixture(scope="module")
def read_services(
    migrated: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServiceProcess]]:
    logs = tmp_path_factory.mktemp("docs-logs")
    with (
        running_service("reporting", migrated, logs) as reporting,
        running_service("notifications", migrated, logs) as notifications,
    ):
        reporting.wait_ready()
        notifications.wait_ready()
        yield {"reporting": reporting, "notifications": notifications}


def check_offline_docs(url: str) -> int:
    """Asserts the page and its assets are local; returns how many assets it loads."""
    page = httpx.get(f"{url}/docs")
    assert page.status_code == 200
    assert not re.search(r"https?://|//[a-z0-9]", page.text, re.IGNORECASE), page.text
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "http" not in policy
    assets = REFERENCE.findall(page.text)
    assert assets
    for asset in assets:
        assert asset.startswith("/"), asset
        answer = httpx.get(f"{url}{asset}")
        assert answer.status_code == 200, asset
        assert len(answer.content) > 1000, asset
    assert httpx.get(f"{url}/openapi.json").status_code == 200
    return len(assets)


@pytest.mark.parametrize("service", ["meetings", "resolutions"])
def test_write_services_serve_their_docs_offline(
    write_services: dict[str, ServiceProcess], service: str
) -> None:
    assert check_offline_docs(write_services[service].url) >= 3


@pytest.mark.parametrize("service", ["reporting", "notifications"])
def test_read_services_serve_their_docs_offline(
    read_services: dict[str, ServiceProcess], service: str
) -> None:
    assert check_offline_docs(read_services[service].url) >= 3


def test_the_dashboard_keeps_its_policy(read_services: dict[str, ServiceProcess]) -> None:
    page = httpx.get(f"{read_services['reporting'].url}/")
    assert page.status_code == 401
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]


async def test_swagger_ui_renders_with_no_other_host_reachable(
    write_services: dict[str, ServiceProcess],
) -> None:
    url = write_services["meetings"].url
    assert CHROMIUM.exists(), "Chromium is missing: run `bash deploy/local/browser.sh`"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page()
            elsewhere: list[str] = []
            problems: list[str] = []  # script errors and refusals by the page's policy

            async def only_this_service(route: Route) -> None:
                if route.request.url.startswith(url):
                    await route.continue_()
                else:
                    elsewhere.append(route.request.url)
                    await route.abort()

            await page.route("**/*", only_this_service)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on(
                "console",
                lambda message: problems.append(message.text) if message.type == "error" else None,
            )
            await page.goto(f"{url}/docs")
            operations = page.locator(".opblock")
            await operations.first.wait_for(timeout=20_000)
            assert await operations.count() >= 6
            assert elsewhere == []
            assert problems == []
        finally:
            await browser.close()
