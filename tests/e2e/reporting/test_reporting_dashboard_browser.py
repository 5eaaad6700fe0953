"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): it loads with
sample history, its charts render, the unit filter works, and the quarterly exports open.
A screenshot is saved under artifacts/ at the repository root."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from ipmg_shared.settings import Settings
from tests.integration.reporting.system import (
    isolated,
    migrate_reporting,
    reader_token,
    wait_applied,
    write_side,
)
from tests.support.processes import REPO, running_service
from tests.unit.reporting.history import sample_history

pytestmark = pytest.mark.infra

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "artifacts"


async def test_the_dashboard_loads_draws_its_charts_and_filters_by_unit(
    postgres: Settings, kafka: Settings, tmp_path: Path
) -> None:
    assert CHROMIUM.exists(), "Chromium is missing: run `bash deploy/local/browser.sh`"  # noqa: ASYNC240
    settings = await isolated(kafka)
    async with write_side(settings) as writes:
        await migrate_reporting(settings)
        total = await writes.append(sample_history(seed=7, random_commits=50))
        writes.start_relays()
        await writes.published()

    with running_service("reporting", settings, tmp_path) as reporting:
        reporting.wait_ready()
        await wait_applied(settings, total)
        token = reader_token(settings)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                problems: list[str] = []  # script errors, refusals (CSP), failed requests
                page.on("pageerror", lambda error: problems.append(str(error)))
                page.on(
                    "console",
                    lambda message: (
                        problems.append(message.text)
                        if message.type == "error" and "Failed to load resource" not in message.text
                        else None
                    ),
                )
                page.on(
                    "response",
                    lambda response: (
                        problems.append(f"{response.status} {response.url}")
                        if response.status >= 400
                        else None
                    ),
                )
                await page.goto(f"{reporting.url}/")  # the sign-in form posts the token
                await page.fill("#sign-in input[name=token]", token)
                async with page.expect_navigation():
                    await page.click("#sign-in button[type=submit]")
                assert page.url == f"{reporting.url}/", await page.content()
                assert await page.locator("#sign-out").count() == 1, await page.content()
                assert problems == [f"401 {reporting.url}/"]  # the sign-in page, before it
                problems.clear()
                rows = page.locator("#tracker tbody tr.resolution")
                all_rows = await rows.count()
                assert all_rows > 5
                bars = page.locator("#scorecards svg rect.bar")
                assert await bars.count() > 0
                heights = [
                    float(h or 0)
                    for h in await bars.evaluate_all(
                        "rects => rects.map(r => r.getAttribute('height'))"
                    )
                ]
                assert max(heights) > 0
                box = await page.locator("#scorecards figure.chart svg").first.bounding_box()
                assert box is not None
                assert box["width"] > 100
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(
                    path=str(ARTIFACTS / "reporting-dashboard.png"), full_page=True
                )

                await page.select_option("#unit-filter", "balochistan")
                visible = page.locator("#tracker tbody tr.resolution:visible")
                shown = await visible.count()
                assert 0 < shown < all_rows
                for units in await visible.evaluate_all("rows => rows.map(r => r.dataset.units)"):
                    assert "balochistan" in units.split()
                assert await page.locator("#tracker [data-count-of]").inner_text() == str(shown)
                assert "unit=balochistan" in page.url

                await page.screenshot(
                    path=str(ARTIFACTS / "reporting-dashboard-balochistan.png"), full_page=True
                )

                await page.click("#export-html")
                await page.wait_for_load_state()
                assert "quarterly report" in (await page.locator("h1").inner_text())
                csv = await page.request.get(f"{reporting.url}/reports/quarterly/2016-Q1.csv")
                assert csv.status == 200
                assert (await csv.text()).startswith("quarter,resolution_number")
                assert problems == []
            finally:
                await browser.close()
