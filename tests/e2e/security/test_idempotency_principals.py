"""An Idempotency-Key belongs to the principal who sent it: the same principal retrying gets
the first answer; anyone else sending the same key is refused by the policy, or runs a command
of their own, and is never answered with the first one's result."""

from __future__ import annotations

from uuid import uuid4

import httpx
import pytest

from ipmg_shared.actors import Role, Unit
from ipmg_shared.settings import Settings
from tests.e2e.security.world import World, principals
from tests.support.meetings import extraordinary_meeting
from tests.support.processes import ServiceProcess
from tests.support.tokens import bearer, secretariat

pytestmark = pytest.mark.infra


async def test_another_principal_replaying_a_meeting_key_gets_no_first_answer(
    services: dict[str, ServiceProcess], migrated: Settings
) -> None:
    url = f"{services['meetings'].url}/meetings"
    body = extraordinary_meeting("2016-05-10", "punjab", "Lahore")
    key = {"Idempotency-Key": f"schedule-{uuid4()}"}
    other_staff = bearer(migrated, Unit.NCSW, Role.SECRETARIAT, subject="other@ncsw.example.org")
    async with httpx.AsyncClient(timeout=20) as client:
        first = await client.post(url, json=body, headers={**secretariat(migrated), **key})
        again = await client.post(url, json=body, headers={**secretariat(migrated), **key})
        focal = await client.post(
            url, json=body, headers={**bearer(migrated, Unit.PUNJAB, Role.FOCAL_PERSON), **key}
        )
        auditor = await client.post(
            url, json=body, headers={**bearer(migrated, Unit.NCSW, Role.AUDITOR), **key}
        )
        # Their own meeting, so that the rule against duplicates has no say in it.
        own = extraordinary_meeting("2016-05-10", "punjab", "Lahore")
        other = await client.post(url, json=own, headers={**other_staff, **key})
        history = await client.get(
            f"{url}/{first.json()['id']}/events", headers=secretariat(migrated)
        )

    assert first.status_code == 201
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    for refused in (focal, auditor):
        assert refused.status_code == 403
        assert refused.json()["rule"] == "meeting.auth.secretariat_only"
        assert "Idempotent-Replayed" not in refused.headers
    # Another member of the secretariat with the same key: a command of their own.
    assert other.status_code == 201
    assert "Idempotent-Replayed" not in other.headers
    assert other.json()["id"] != first.json()["id"]
    assert [event["type"] for event in history.json()] == ["MeetingScheduled"]


async def test_a_focal_persons_key_is_theirs_alone(
    services: dict[str, ServiceProcess], migrated: Settings, world: World
) -> None:
    url = f"{services['resolutions'].url}/resolutions/{world.circulated_id}/feedback"
    who = principals(migrated)
    punjab_says = {"unit": "punjab", "person": "Focal of punjab", "position": "endorse"}
    sindh_says = {"unit": "sindh", "person": "Focal of sindh", "position": "amend"}
    key = {"Idempotency-Key": f"feedback-{uuid4()}"}
    async with httpx.AsyncClient(timeout=20) as client:
        first = await client.post(url, json=punjab_says, headers={**who["punjab"], **key})
        # Sindh replays Punjab's request word for word: refused, not answered from Punjab's.
        copied = await client.post(url, json=punjab_says, headers={**who["sindh"], **key})
        # Sindh's own feedback under the same key is Sindh's command.
        own = await client.post(url, json=sindh_says, headers={**who["sindh"], **key})
        again = await client.post(url, json=punjab_says, headers={**who["punjab"], **key})

    assert first.status_code == 200, first.text
    assert copied.status_code == 403
    assert copied.json()["rule"] == "resolution.auth.own_unit_only"
    assert "Idempotent-Replayed" not in copied.headers
    assert own.status_code == 200, own.text
    assert "Idempotent-Replayed" not in own.headers
    assert own.json()["event_ids"] != first.json()["event_ids"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
