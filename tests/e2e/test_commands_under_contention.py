"""Commands without ``If-Match`` ask for no version check: concurrent ones on one stream all
succeed while each stays valid, on one replica or spread over two, against the real
PostgreSQL. Only a genuine rule refusal is a 409."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from ipmg_shared.actors import Unit
from ipmg_shared.settings import Settings
from tests.e2e.test_lifecycle_over_http import held_meeting, pass_resolution
from tests.support.processes import ServiceProcess, running_service
from tests.support.tokens import focal_person, secretariat
from tests.support.waiting import wait_until

pytestmark = pytest.mark.infra

CONCURRENT = 20
PARTICIPANTS = [Unit.PUNJAB, Unit.SINDH, Unit.KHYBER_PAKHTUNKHWA, Unit.BALOCHISTAN]


async def circulated_resolution(
    client: httpx.AsyncClient, services: dict[str, ServiceProcess], settings: Settings
) -> str:
    meeting_id = await held_meeting(client, services["meetings"].url, settings)
    resolutions = services["resolutions"].url
    passed: dict[str, Any] = {}

    async def pass_it() -> bool:
        passed["response"] = await pass_resolution(client, resolutions, settings, meeting_id)
        return bool(passed["response"].status_code == 201)

    await wait_until(pass_it, timeout=30, interval=0.3)
    resolution_id = str(passed["response"].json()["id"])
    circulated = await client.post(
        f"{resolutions}/resolutions/{resolution_id}/circulate",
        json={"participants": [unit.value for unit in PARTICIPANTS], "feedback_due": "2015-12-15"},
        headers=secretariat(settings),
    )
    assert circulated.status_code == 200, circulated.text
    return resolution_id


async def concurrent_feedback(
    client: httpx.AsyncClient, urls: list[str], resolution_id: str, settings: Settings
) -> list[httpx.Response]:
    async def give(n: int) -> httpx.Response:
        unit = PARTICIPANTS[n % len(PARTICIPANTS)]
        return await client.post(
            f"{urls[n % len(urls)]}/resolutions/{resolution_id}/feedback",
            json={"unit": unit.value, "person": f"Focal person {n}", "position": "endorse"},
            headers=focal_person(settings, unit),
        )

    return await asyncio.gather(*(give(n) for n in range(CONCURRENT)))


async def feedback_events(
    client: httpx.AsyncClient, url: str, resolution_id: str, settings: Settings
) -> int:
    history = await client.get(
        f"{url}/resolutions/{resolution_id}/events", headers=secretariat(settings)
    )
    assert history.status_code == 200, history.text
    return sum(1 for event in history.json() if event["type"] == "FeedbackReceived")


async def test_concurrent_feedback_without_if_match_all_succeeds(
    write_services: dict[str, ServiceProcess], migrated: Settings
) -> None:
    resolutions = write_services["resolutions"].url
    async with httpx.AsyncClient(timeout=60) as client:
        resolution_id = await circulated_resolution(client, write_services, migrated)
        answers = await concurrent_feedback(client, [resolutions], resolution_id, migrated)
        assert [a.status_code for a in answers] == [200] * CONCURRENT, [
            a.text for a in answers if a.status_code != 200
        ]
        assert await feedback_events(client, resolutions, resolution_id, migrated) == CONCURRENT


async def test_concurrent_feedback_over_two_replicas_all_succeeds(
    write_services: dict[str, ServiceProcess], migrated: Settings, tmp_path: Path
) -> None:
    first = write_services["resolutions"].url
    with running_service("resolutions", migrated, tmp_path) as second:
        second.wait_ready()
        async with httpx.AsyncClient(timeout=60) as client:
            resolution_id = await circulated_resolution(client, write_services, migrated)
            answers = await concurrent_feedback(
                client, [first, second.url], resolution_id, migrated
            )
            assert [a.status_code for a in answers] == [200] * CONCURRENT, [
                a.text for a in answers if a.status_code != 200
            ]
            assert await feedback_events(client, first, resolution_id, migrated) == CONCURRENT


async def test_a_rule_refusal_is_still_a_conflict(
    write_services: dict[str, ServiceProcess], migrated: Settings
) -> None:
    resolutions = write_services["resolutions"].url
    async with httpx.AsyncClient(timeout=60) as client:
        resolution_id = await circulated_resolution(client, write_services, migrated)
        outsider = await client.post(
            f"{resolutions}/resolutions/{resolution_id}/feedback",
            json={"unit": "ajk", "person": "Focal person", "position": "endorse"},
            headers=focal_person(migrated, Unit.AJK),
        )
        assert outsider.status_code == 409
        assert outsider.json()["rule"] == "resolution.feedback.not_a_participant"
