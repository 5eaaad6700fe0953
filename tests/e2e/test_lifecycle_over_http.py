"""The whole IPMG cycle through the public HTTP APIs of meetings and resolutions, running as
processes against the real Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import jwt
import pytest

from ipmg_shared.actors import Role, Unit
from ipmg_shared.chain import ChainVerifier
from ipmg_shared.envelope import Envelope
from ipmg_shared.kafka_reader import read_topic
from ipmg_shared.settings import Settings
from tests.support.meetings import extraordinary_meeting
from tests.support.processes import ServiceProcess
from tests.support.tokens import bearer, focal_person, secretariat
from tests.support.waiting import wait_until

pytestmark = pytest.mark.infra

HELD_MEETING = {
    "held_on": "2015-11-26",
    "host_unit": "ajk",
    "venue": "Muzaffarabad",
    "occasion": "16 Days of Activism against Gender-Based Violence",
    "attendees": [
        {"name": "Chairperson", "role": "chairperson", "unit": "ncsw"},
        {"name": "Minister, Women Development", "role": "minister", "unit": "punjab"},
        {"name": "Secretary, Women Development", "role": "secretary", "unit": "sindh"},
    ],
    "agenda": ["CEDAW reporting", "Independent WDDs"],
}


async def held_meeting(client: httpx.AsyncClient, meetings: str, settings: Settings) -> str:
    scheduled = await client.post(
        f"{meetings}/meetings",
        json=extraordinary_meeting("2015-11-26", "ajk", "Muzaffarabad"),
        headers=secretariat(settings),
    )
    assert scheduled.status_code == 201, scheduled.text
    meeting_id = str(scheduled.json()["id"])
    assert scheduled.headers["Location"].endswith(meeting_id)
    held = await client.post(
        f"{meetings}/meetings/{meeting_id}/held", json=HELD_MEETING, headers=secretariat(settings)
    )
    assert held.status_code == 200, held.text
    return meeting_id


async def pass_resolution(
    client: httpx.AsyncClient, resolutions: str, settings: Settings, meeting_id: str
) -> httpx.Response:
    return await client.post(
        f"{resolutions}/resolutions",
        json={
            "meeting_id": meeting_id,
            "number": 1,
            "title": "Report on CEDAW commitments every quarter",
            "text": "Each unit reports its progress on the CEDAW concluding observations.",
            "priority_area": "cedaw",
            "responsible_units": ["punjab", "sindh"],
        },
        headers=secretariat(settings),
    )


async def test_full_lifecycle(
    write_services: dict[str, ServiceProcess], migrated: Settings
) -> None:
    settings = migrated
    meetings = write_services["meetings"].url
    resolutions = write_services["resolutions"].url
    async with httpx.AsyncClient(timeout=20) as client:
        meeting_id = await held_meeting(client, meetings, settings)

        # resolutions learns of the meeting from Kafka; until then it answers 409 (retryable)
        passed: dict[str, Any] = {}

        async def pass_it() -> bool:
            response = await pass_resolution(client, resolutions, settings, meeting_id)
            passed["response"] = response
            return response.status_code == 201

        await wait_until(pass_it, timeout=30, interval=0.3)
        resolution_id = passed["response"].json()["id"]
        base = f"{resolutions}/resolutions/{resolution_id}"
        ncsw = secretariat(settings)

        async def ok(path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
            response = await client.post(f"{base}/{path}", json=body, headers=headers)
            assert response.status_code == 200, response.text
            return dict(response.json())

        await ok(
            "circulate", {"participants": ["punjab", "sindh"], "feedback_due": "2015-12-15"}, ncsw
        )
        await ok(
            "feedback",
            {"unit": "punjab", "person": "Focal person, Punjab WDD", "position": "endorse"},
            focal_person(settings, Unit.PUNJAB),
        )
        await ok(
            "feedback",
            {
                "unit": "sindh",
                "person": "Focal person, Sindh WDD",
                "position": "amend",
                "comments": "Add a reporting template",
            },
            focal_person(settings, Unit.SINDH),
        )
        await ok(
            "amend",
            {
                "text": "Each unit reports quarterly using the common template.",
                "reason": "Sindh's feedback",
            },
            ncsw,
        )
        override = {"overridden": ["sindh"], "override_reason": "Sindh's template is in the text"}
        await ok("approve", override, ncsw)
        await ok(
            "sign",
            {
                "signed_on": "2016-01-10",
                "signatories": [{"name": "Chairperson", "role": "chairperson", "unit": "ncsw"}],
            },
            ncsw,
        )
        await ok(
            "action-plan",
            {
                "quarter": "2016-Q1",
                "actions": [
                    {
                        "action_id": "A1",
                        "unit": "punjab",
                        "description": "Submit the first report",
                        "due_on": "2016-03-31",
                    },
                    {
                        "action_id": "A2",
                        "unit": "sindh",
                        "description": "Submit the first report",
                        "due_on": "2016-03-31",
                    },
                ],
            },
            ncsw,
        )
        await ok(
            "progress",
            {
                "action_id": "A1",
                "status": "completed",
                "percent": 100,
                "narrative": "Report submitted",
            },
            focal_person(settings, Unit.PUNJAB),
        )

        # Sindh cannot report Punjab's progress, and nothing is appended when refused.
        before = (await client.get(base, headers=ncsw)).json()["version"]
        refused = await client.post(
            f"{base}/progress",
            json={"action_id": "A1", "status": "in_progress", "percent": 10, "narrative": "x"},
            headers=focal_person(settings, Unit.SINDH),
        )
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["rule"] == "resolution.auth.own_unit_only"
        assert (await client.get(base, headers=ncsw)).json()["version"] == before

        state = (await client.get(base, headers=ncsw)).json()
        assert state["state"]["status"] == "action_plan_adopted"
        history = (await client.get(f"{base}/events", headers=ncsw)).json()
        assert [e["type"] for e in history] == [
            "ResolutionPassed",
            "ResolutionCirculated",
            "FeedbackReceived",
            "FeedbackReceived",
            "ResolutionAmended",
            "ResolutionApproved",
            "ResolutionSigned",
            "ActionPlanAdopted",
            "ProgressReported",
        ]
        assert history[2]["actor"] == {
            "subject": "focal_person@punjab.example.org",
            "unit": "punjab",
            "role": "focal_person",
        }

    # On the topic: every event, in order, with its envelope and a valid chain.
    async def on_topic() -> list[dict[str, Any]]:
        records = [r async for r in read_topic(settings, settings.topics.events("resolutions"))]
        return [Envelope.from_bytes(r.value).to_json() for r in records]

    await wait_until(lambda: _has_stream(on_topic(), f"resolution-{resolution_id}", 9), timeout=30)
    published = await on_topic()
    report = ChainVerifier("resolutions").feed_all(published)
    assert report.ok, report.first_break


async def _has_stream(events: Any, stream_id: str, count: int) -> bool:
    return sum(1 for e in await events if e["stream_id"] == stream_id) >= count


async def test_passing_at_an_unknown_meeting_is_refused(
    write_services: dict[str, ServiceProcess], migrated: Settings
) -> None:
    async with httpx.AsyncClient(timeout=20) as client:
        response = await pass_resolution(
            client, write_services["resolutions"].url, migrated, str(UUID(int=7))
        )
    assert response.status_code == 409
    assert response.json()["rule"] == "resolution.pass.meeting_unknown"


async def test_idempotency_key_returns_the_first_answer_and_appends_once(
    write_services: dict[str, ServiceProcess], migrated: Settings
) -> None:
    meetings = write_services["meetings"].url
    body = extraordinary_meeting("2016-02-20", "punjab", "Lahore")
    headers = {**secretariat(migrated), "Idempotency-Key": f"schedule-{uuid4()}"}
    async with httpx.AsyncClient(timeout=20) as client:
        first = await client.post(f"{meetings}/meetings", json=body, headers=headers)
        again = await client.post(f"{meetings}/meetings", json=body, headers=headers)
        other = await client.post(
            f"{meetings}/meetings", json={**body, "venue": "Multan"}, headers=headers
        )
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert other.status_code == 422
        history = await client.get(
            f"{meetings}/meetings/{first.json()['id']}/events", headers=secretariat(migrated)
        )
        assert len(history.json()) == 1


async def test_concurrent_writes_with_if_match_one_wins_the_rest_conflict(
    write_services: dict[str, ServiceProcess], migrated: Settings
) -> None:
    meetings = write_services["meetings"].url
    ncsw = secretariat(migrated)
    async with httpx.AsyncClient(timeout=30) as client:
        created = await client.post(
            f"{meetings}/meetings",
            json=extraordinary_meeting("2016-05-20", "sindh", "Karachi"),
            headers=ncsw,
        )
        meeting_id = created.json()["id"]
        responses = await asyncio.gather(
            *(
                client.post(
                    f"{meetings}/meetings/{meeting_id}/reschedule",
                    json={
                        "scheduled_for": f"2016-06-{day:02d}",
                        "host_unit": "sindh",
                        "venue": "Karachi",
                        "reason": "clash",
                    },
                    headers={**ncsw, "If-Match": '"1"'},
                )
                for day in range(1, 11)
            )
        )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [409] * 9
    conflict = next(r for r in responses if r.status_code == 409).json()
    assert conflict["rule"] == "stream.expected_version"


def forged_token(settings: Settings, kind: str) -> dict[str, str]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": "intruder@example.org",
        "unit": "ncsw",
        "role": "secretariat",
        "iat": now,
        "exp": now + timedelta(hours=1),
        "iss": settings.jwt_issuer,
        "aud": ["ipmg-meetings", "ipmg-resolutions"],
        "jti": "forged",
    }
    secret = settings.jwt_secret.get_secret_value()
    if kind == "wrong-signature":
        secret = "another-key-entirely-of-sufficient-length"
    elif kind == "expired":
        claims["exp"] = now - timedelta(minutes=1)
    elif kind == "missing-unit":
        del claims["unit"]
    elif kind == "unknown-role":
        claims["role"] = "minister"
    elif kind == "another-audience":
        claims["aud"] = ["ipmg-reporting"]
    elif kind == "over-the-lifetime-cap":
        claims["exp"] = now + timedelta(days=365 * 100)
    elif kind == "none":
        return {}
    elif kind == "garbage":
        return {"Authorization": "Bearer not-a-token"}
    return {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}


@pytest.mark.parametrize(
    "kind",
    [
        "none",
        "garbage",
        "wrong-signature",
        "expired",
        "missing-unit",
        "unknown-role",
        "another-audience",
        "over-the-lifetime-cap",
    ],
)
async def test_commands_need_a_valid_token_and_append_nothing_without_one(
    write_services: dict[str, ServiceProcess], migrated: Settings, kind: str
) -> None:
    meetings = write_services["meetings"].url
    body = extraordinary_meeting("2016-02-20", "punjab", "Lahore")
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.post(
            f"{meetings}/meetings",
            json=body,
            headers={**forged_token(migrated, kind), "Idempotency-Key": f"forged-{kind}"},
        )
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["WWW-Authenticate"] == "Bearer"
        # Nothing was recorded under that key: the same key with a valid token now applies.
        accepted = await client.post(
            f"{meetings}/meetings",
            json=body,
            headers={**secretariat(migrated), "Idempotency-Key": f"forged-{kind}"},
        )
        assert accepted.status_code == 201
        assert "Idempotent-Replayed" not in accepted.headers


async def test_an_auditor_cannot_issue_commands(
    write_services: dict[str, ServiceProcess], migrated: Settings
) -> None:
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.post(
            f"{write_services['meetings'].url}/meetings",
            json={"scheduled_for": "2016-02-20", "host_unit": "punjab", "venue": "Lahore"},
            headers=bearer(migrated, Unit.NCSW, Role.AUDITOR),
        )
    assert response.status_code == 403
    assert response.json()["rule"] == "meeting.auth.secretariat_only"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b'{"scheduled_for": "2016-02-30", "host_unit": "punjab", "venue": "Lahore"}', 422),
        (b'{"scheduled_for": "2016-02-20", "host_unit": "atlantis", "venue": "Lahore"}', 422),
        (b'{"scheduled_for": "2016-02-20", "host_unit": "punjab", "venue": "L", "x": 1}', 422),
        (
            b'{"scheduled_for": "2016-02-20", "host_unit": "punjab", "venue": "'
            + b"x" * 300_000
            + b'"}',
            413,
        ),
        (
            b'{"scheduled_for": "2016-02-20", "host_unit": "punjab", "venue": "\\u0000", '
            b'"extraordinary": true, "reason": "r"}',
            422,
        ),
    ],
    ids=["malformed", "bad-date", "unknown-unit", "unknown-field", "oversized", "nul-char"],
)
async def test_bad_input_is_a_problem_not_a_500(
    write_services: dict[str, ServiceProcess], migrated: Settings, body: bytes, status: int
) -> None:
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.post(
            f"{write_services['meetings'].url}/meetings",
            content=body,
            headers={**secretariat(migrated), "Content-Type": "application/json"},
        )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
