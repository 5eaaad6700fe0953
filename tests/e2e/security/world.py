"""What the security tests act on, made through the public HTTP APIs: a held meeting, a
resolution circulated to Punjab and Sindh, and one whose action plan gives each an action."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from ipmg_shared.actors import Role, Unit
from ipmg_shared.settings import Settings
from tests.support.meetings import extraordinary_meeting
from tests.support.tokens import bearer, secretariat
from tests.support.waiting import wait_until

UNITS = (Unit.PUNJAB, Unit.SINDH)
ACTIONS = {Unit.PUNJAB: "A1", Unit.SINDH: "A2"}


@dataclass(frozen=True)
class World:
    meeting_id: str
    circulated_id: str  # open for feedback from Punjab and Sindh
    planned_id: str  # its action plan gives Punjab A1 and Sindh A2


def principals(settings: Settings) -> dict[str, dict[str, str]]:
    """The principals the tests act as, by name: their bearer headers."""
    return {
        "secretariat": secretariat(settings),
        "punjab": bearer(settings, Unit.PUNJAB, Role.FOCAL_PERSON),
        "sindh": bearer(settings, Unit.SINDH, Role.FOCAL_PERSON),
        "auditor": bearer(settings, Unit.NCSW, Role.AUDITOR),
    }


async def _ok(client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: Any) -> Any:
    response = await client.post(url, json=body, headers=headers)
    assert response.status_code in (200, 201), (url, response.status_code, response.text)
    return response.json()


async def make_world(settings: Settings, meetings: str, resolutions: str) -> World:
    ncsw = secretariat(settings)
    async with httpx.AsyncClient(timeout=20) as client:
        meeting = await _ok(
            client,
            f"{meetings}/meetings",
            extraordinary_meeting("2016-08-10", "sindh", "Karachi"),
            ncsw,
        )
        meeting_id = str(meeting["id"])
        await _ok(
            client,
            f"{meetings}/meetings/{meeting_id}/held",
            {
                "held_on": "2016-08-10",
                "host_unit": "sindh",
                "venue": "Karachi",
                "attendees": [
                    {"name": "Attendee of punjab", "role": "minister", "unit": "punjab"},
                    {"name": "Attendee of sindh", "role": "minister", "unit": "sindh"},
                ],
                "agenda": ["Follow-up"],
            },
            ncsw,
        )
        passed: list[str] = []

        async def pass_one(number: int) -> bool:
            response = await client.post(
                f"{resolutions}/resolutions",
                json={
                    "meeting_id": meeting_id,
                    "number": number,
                    "title": f"Resolution {number} on reporting",
                    "text": "Each unit reports its progress every quarter.",
                    "priority_area": "cedaw",
                    "responsible_units": ["punjab", "sindh"],
                },
                headers=ncsw,
            )
            if response.status_code == 201:
                passed.append(str(response.json()["id"]))
            return response.status_code == 201

        await wait_until(lambda: pass_one(1), timeout=30, interval=0.3)
        assert await pass_one(2)
        circulated_id, planned_id = passed
        for resolution_id in passed:
            await _ok(
                client,
                f"{resolutions}/resolutions/{resolution_id}/circulate",
                {"participants": ["punjab", "sindh"], "feedback_due": "2016-08-30"},
                ncsw,
            )
        base = f"{resolutions}/resolutions/{planned_id}"
        await _ok(client, f"{base}/approve", {}, ncsw)
        await _ok(
            client,
            f"{base}/sign",
            {
                "signed_on": "2016-09-05",
                "signatories": [
                    {"name": "Signatory of sindh", "role": "minister", "unit": "sindh"}
                ],
            },
            ncsw,
        )
        await _ok(
            client,
            f"{base}/action-plan",
            {
                "quarter": "2016-Q4",
                "actions": [
                    {
                        "action_id": ACTIONS[unit],
                        "unit": unit.value,
                        "description": "Report",
                        "due_on": "2016-12-31",
                    }
                    for unit in UNITS
                ],
            },
            ncsw,
        )
    return World(meeting_id, circulated_id, planned_id)
