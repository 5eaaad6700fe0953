"""Reporting shows a focal person other units' personal data withheld, as the policy says:
no report, export, timeline or page names another unit's people or addresses, and the
notifications log of another unit is refused, as the notifications service refuses it."""

from __future__ import annotations

import httpx
import pytest

from ipmg_shared.actors import Role, Unit
from ipmg_shared.auth import issue_token
from ipmg_shared.settings import Settings
from tests.integration.reporting.system import (
    isolated,
    migrate_reporting,
    running_reporting,
    wait_applied,
    write_side,
)
from tests.unit.reporting.history import HistoryWriter, with_notifications

pytestmark = pytest.mark.infra


def others_personal_data(own: Unit) -> list[str]:
    """The names and addresses the sample history gives people of units other than ``own``."""
    found = ["staff@ncsw.gov.pk"]
    for unit in Unit:
        if unit is not own:
            found += [
                f"Secretary WDD {unit.value}",
                f"Focal person {unit.value}",
                f"focal@{unit.value}.gov.pk",
                f"https://{unit.value}.gov.pk",
            ]
    return found


async def everything_readable(client: httpx.AsyncClient, token: str) -> dict[str, str]:
    """Every report, export, timeline and page reporting serves, as this token reads them."""
    headers = {"Authorization": f"Bearer {token}"}

    async def text(path: str, **params: str) -> str:
        response = await client.get(path, params=params, headers=headers)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.text

    answers: dict[str, str] = {}
    for path in (
        "/reports/resolutions",
        "/reports/scorecards",
        "/reports/meetings",
        "/reports/overdue",
        "/reports/notifications",
        "/reports/quarters",
        "/reports/status",
    ):
        answers[path] = await text(path)
    answers["/reports/recent"] = await text("/reports/recent", limit="500")
    resolutions = (await client.get("/reports/resolutions", headers=headers)).json()
    meetings = (await client.get("/reports/meetings", headers=headers)).json()
    for row in resolutions:
        path = f"/reports/resolutions/{row['resolution_id']}"
        answers[path] = await text(path)
    entities = [
        *(row["resolution_id"] for row in resolutions),
        *(row["meeting_id"] for row in meetings),
        *(unit.value for unit in Unit),
    ]
    for entity in entities:
        answers[f"/reports/timeline/{entity}"] = await text(f"/reports/timeline/{entity}")
        answers[f"/?entity={entity}"] = await text("/", entity=entity)
    for quarter in (await client.get("/reports/quarters", headers=headers)).json():
        for suffix in ("", ".html", ".csv"):
            path = f"/reports/quarterly/{quarter}{suffix}"
            answers[path] = await text(path)
    answers["/"] = await text("/")
    return answers


async def test_a_focal_person_reads_no_other_units_personal_data(kafka: Settings) -> None:
    settings = await isolated(kafka)
    writer = HistoryWriter(seed=5)
    async with write_side(settings) as writes:
        await migrate_reporting(settings)
        total = await writes.append(
            with_notifications([*writer.story(), *writer.random_commits(60)])
        )
        writes.start_relays()
        await writes.published()
        async with running_reporting(settings) as reporting:
            await wait_applied(settings, total)
            client = reporting.client
            answered: list[int] = []

            async def count(response: httpx.Response) -> None:
                answered.append(response.status_code)

            client.event_hooks["response"].append(count)
            punjab = issue_token(
                settings, subject="focal@punjab.gov.pk", unit=Unit.PUNJAB, role=Role.FOCAL_PERSON
            )
            auditor = issue_token(
                settings, subject="auditor@ncsw.gov.pk", unit=Unit.NCSW, role=Role.AUDITOR
            )
            as_punjab = await everything_readable(client, punjab)
            as_auditor = await everything_readable(client, auditor)

            # The leak that was: another unit's notifications log, refused as notifications does.
            refused = await client.get(
                "/reports/notifications",
                params={"unit": "sindh"},
                headers={"Authorization": f"Bearer {punjab}"},
            )
            audited = await client.get(
                "/reports/notifications",
                params={"unit": "sindh"},
                headers={"Authorization": f"Bearer {auditor}"},
            )
            own = await client.get(
                "/reports/notifications",
                params={"unit": "punjab"},
                headers={"Authorization": f"Bearer {punjab}"},
            )

    print(f"\nreporting reads: {len(answered)}; 5xx: {sum(s >= 500 for s in answered)}")
    assert all(status < 500 for status in answered)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert audited.status_code == 200
    assert {row["unit"] for row in audited.json()} == {"sindh"}
    assert any(row["address"].startswith("https://sindh") for row in audited.json())
    assert own.status_code == 200
    assert own.json()
    assert {row["unit"] for row in own.json()} == {"punjab"}

    # The auditor reads every unit's people; the focal person of Punjab none but Punjab's.
    forbidden = others_personal_data(Unit.PUNJAB)
    seen_by_auditor = {name for name in forbidden if any(name in t for t in as_auditor.values())}
    assert {"Secretary WDD sindh", "staff@ncsw.gov.pk", "https://sindh.gov.pk"} <= seen_by_auditor
    leaks = {(path, name) for path, text in as_punjab.items() for name in forbidden if name in text}
    assert leaks == set()
    assert any("Secretary WDD punjab" in text for text in as_punjab.values())
    assert any("(withheld)" in text for text in as_punjab.values())
    assert len(as_punjab) == len(as_auditor) > 40
