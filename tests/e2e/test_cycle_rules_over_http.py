"""The IPMG cycle's own rules over HTTP: each refusal a 409 naming its rule, appending nothing."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from ipmg_shared.settings import Settings
from tests.support.processes import ServiceProcess
from tests.support.tokens import secretariat

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
