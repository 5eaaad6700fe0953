"""The IPMG cycle's own rules over HTTP: each refusal a 409 naming its rule, appending nothing."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest

from ipmg_shared.settings import Settings
from tests.support.meetings import extraordinary_meeting
from tests.support.processes import ServiceProcess
from tests.support.tokens import secretariat
from tests.support.waiting import wait_until

pytestmark = pytest.mark.infra

# A quarter no other test of the session uses for an ordinary meeting, after the sample history.
FIRST = {"scheduled_for": "2029-02-10", "host_unit": "ajk", "venue": "Muzaffarabad"}


async def store_head(settings: Settings, service: str) -> int:
    connection = await asyncpg.connect(settings.service_dsn(service))
    try:
        return int(await connection.fetchval("SELECT coalesce(max(position), 0) FROM events"))
    finally:
        await connection.close()


async def refused(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], settings: Settings, service: str
) -> str:
    before = await store_head(settings, service)
    response = await client.post(url, json=body, headers=secretariat(settings))
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert await store_head(settings, service) == before
    return str(response.json()["rule"])


async def test_one_ordinary_meeting_a_quarter_hosted_in_turn(
    write_services: dict[str, ServiceProcess], migrated: Settings
) -> None:
    url = f"{write_services['meetings'].url}/meetings"
    ncsw = secretariat(migrated)
    async with httpx.AsyncClient(timeout=20) as client:
        first = await client.post(url, json=FIRST, headers=ncsw)
        assert first.status_code == 201, first.text

        assert await refused(client, url, FIRST, migrated, "meetings") == (
            "meeting.schedule.duplicate"
        )
        second = {"scheduled_for": "2029-03-01", "host_unit": "punjab", "venue": "Lahore"}
        assert await refused(client, url, second, migrated, "meetings") == (
            "meeting.schedule.second_ordinary_in_quarter"
        )
        out_of_turn = {"scheduled_for": "2029-05-10", "host_unit": "sindh", "venue": "Karachi"}
        assert await refused(client, url, out_of_turn, migrated, "meetings") == (
            "meeting.schedule.out_of_turn"
        )

        reason = "Budget proposals for women's shelters before the fiscal year"
        extraordinary = await client.post(
            url, json={**second, "extraordinary": True, "reason": reason}, headers=ncsw
        )
        assert extraordinary.status_code == 201, extraordinary.text
        history = await client.get(f"{url}/{extraordinary.json()['id']}/events", headers=ncsw)
        (scheduled,) = history.json()
        assert scheduled["payload"]["extraordinary"] is True
        assert scheduled["payload"]["reason"] == reason
        assert scheduled["payload"]["expected_host"] == "punjab"
        assert scheduled["payload"]["rotation_version"]


async def held_meeting(client: httpx.AsyncClient, meetings: str, settings: Settings) -> str:
    body = extraordinary_meeting("2016-08-10", "sindh", "Karachi")
    scheduled = await client.post(f"{meetings}/meetings", json=body, headers=secretariat(settings))
    assert scheduled.status_code == 201, scheduled.text
    meeting_id = str(scheduled.json()["id"])
    held = await client.post(
        f"{meetings}/meetings/{meeting_id}/held",
        json={
            "held_on": "2016-08-10",
            "host_unit": "sindh",
            "venue": body["venue"],
            "attendees": [{"name": "Chairperson", "role": "chairperson", "unit": "ncsw"}],
        },
        headers=secretariat(settings),
    )
    assert held.status_code == 200, held.text
    return meeting_id


def resolution(meeting_id: str, number: int) -> dict[str, Any]:
    return {
        "meeting_id": meeting_id,
        "number": number,
        "title": f"Resolution {number} on reporting",
        "text": "Each unit reports its progress every quarter.",
        "priority_area": "cedaw",
        "responsible_units": ["punjab", "sindh"],
    }


async def test_a_resolution_number_is_unique_within_its_meeting(
    write_services: dict[str, ServiceProcess], migrated: Settings
) -> None:
    url = f"{write_services['resolutions'].url}/resolutions"
    ncsw = secretariat(migrated)
    async with httpx.AsyncClient(timeout=20) as client:
        meeting_id = await held_meeting(client, write_services["meetings"].url, migrated)

        async def passed() -> bool:
            response = await client.post(url, json=resolution(meeting_id, 1), headers=ncsw)
            return response.status_code == 201  # 409 until the meeting reaches resolutions

        await wait_until(passed, timeout=30, interval=0.3)
        assert await refused(client, url, resolution(meeting_id, 1), migrated, "resolutions") == (
            "resolution.pass.number_taken"
        )
        second = await client.post(url, json=resolution(meeting_id, 2), headers=ncsw)
        assert second.status_code == 201, second.text


async def test_closing_as_implemented_needs_every_action_done_or_waived(
    write_services: dict[str, ServiceProcess], migrated: Settings
) -> None:
    url = f"{write_services['resolutions'].url}/resolutions"
    ncsw = secretariat(migrated)
    async with httpx.AsyncClient(timeout=20) as client:
        meeting_id = await held_meeting(client, write_services["meetings"].url, migrated)
        created: dict[str, str] = {}

        async def passed() -> bool:
            response = await client.post(url, json=resolution(meeting_id, 1), headers=ncsw)
            created["id"] = response.json().get("id", "")
            return response.status_code == 201

        await wait_until(passed, timeout=30, interval=0.3)
        base = f"{url}/{created['id']}"
        steps: list[tuple[str, dict[str, Any]]] = [
            ("circulate", {"participants": ["punjab", "sindh"], "feedback_due": "2016-08-30"}),
            ("approve", {}),
            (
                "sign",
                {
                    "signed_on": "2016-09-05",
                    "signatories": [{"name": "Minister", "role": "minister", "unit": "sindh"}],
                },
            ),
            (
                "action-plan",
                {
                    "quarter": "2016-Q4",
                    "actions": [
                        {
                            "action_id": f"A-{unit}",
                            "unit": unit,
                            "description": "Report",
                            "due_on": "2016-12-31",
                        }
                        for unit in ("punjab", "sindh")
                    ],
                },
            ),
        ]
        for path, body in steps:
            response = await client.post(f"{base}/{path}", json=body, headers=ncsw)
            assert response.status_code == 200, response.text

        implemented = {"outcome": "implemented", "reason": "All done"}
        assert await refused(client, f"{base}/close", implemented, migrated, "resolutions") == (
            "resolution.close.unfinished_actions"
        )
        superseded = {"outcome": "superseded", "reason": "Replaced", "superseded_by": str(uuid4())}
        assert await refused(client, f"{base}/close", superseded, migrated, "resolutions") == (
            "resolution.close.successor_unknown"
        )
        waived = [
            {"action_id": f"A-{unit}", "reason": "Overtaken by federal law"}
            for unit in ("punjab", "sindh")
        ]
        closed = await client.post(
            f"{base}/close", json={**implemented, "waived": waived}, headers=ncsw
        )
        assert closed.status_code == 200, closed.text
