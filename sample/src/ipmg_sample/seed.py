"""``ipmg seed``: load the sample history through the public HTTP APIs, never the tables.

Every command carries an Idempotency-Key derived from its place in the history, so a second
run changes nothing: each call returns the answer the first run got.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import typer

from ipmg_sample.approvals import APPROVALS
from ipmg_sample.history import MEETINGS, SampleMeeting, SampleResolution
from ipmg_shared.actors import Role, Unit
from ipmg_shared.auth import issue_token
from ipmg_shared.settings import Settings, get_settings

MEETING_KNOWN_TIMEOUT_S = 60.0
# resolutions learns of meetings from Kafka: these refusals clear once it has caught up.
MEETING_NOT_YET_KNOWN = frozenset(
    {"resolution.pass.meeting_unknown", "resolution.pass.meeting_not_held"}
)


class SeedFailed(Exception):
    pass


@dataclass
class SeedReport:
    commands: int = 0
    replayed: int = 0
    created: dict[str, str] = field(default_factory=dict)


class Seeder:
    def __init__(
        self, client: httpx.AsyncClient, settings: Settings, meetings: str, resolutions: str
    ) -> None:
        self.client = client
        self.settings = settings
        self.meetings = meetings.rstrip("/")
        self.resolutions = resolutions.rstrip("/")
        self.report = SeedReport()

    def _headers(self, key: str, unit: Unit = Unit.NCSW) -> dict[str, str]:
        role = Role.SECRETARIAT if unit is Unit.NCSW else Role.FOCAL_PERSON
        subject = (
            "secretariat@ncsw.example.org"
            if unit is Unit.NCSW
            else (f"focal.{unit.value}@example.org")
        )
        token = issue_token(self.settings, subject=subject, unit=unit, role=role)
        return {"Authorization": f"Bearer {token}", "Idempotency-Key": f"seed:{key}"}

    async def post(
        self,
        url: str,
        key: str,
        body: dict[str, Any],
        unit: Unit = Unit.NCSW,
        *,
        retry_on: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + MEETING_KNOWN_TIMEOUT_S
        while True:
            response = await self.client.post(url, json=body, headers=self._headers(key, unit))
            if response.status_code in (200, 201):
                self.report.commands += 1
                if response.headers.get("Idempotent-Replayed") == "true":
                    self.report.replayed += 1
                result: dict[str, Any] = response.json()
                return result
            problem = _json(response)
            if problem.get("rule") in retry_on and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.5)  # the other service has not seen the fact yet
                continue
            raise SeedFailed(
                f"{key}: {response.status_code} {problem.get('detail', response.text[:200])}"
            )

    async def meeting(self, sample: SampleMeeting) -> None:
        created = await self.post(
            f"{self.meetings}/meetings", f"{sample.key}:schedule", sample.schedule
        )
        meeting_id = str(created["id"])
        self.report.created[f"meeting {sample.key}"] = meeting_id
        base = f"{self.meetings}/meetings/{meeting_id}"
        if sample.reschedule:
            await self.post(f"{base}/reschedule", f"{sample.key}:reschedule", sample.reschedule)
        if sample.held:
            await self.post(f"{base}/held", f"{sample.key}:held", sample.held)
        if sample.minutes:
            await self.post(f"{base}/minutes", f"{sample.key}:minutes", {"minutes": sample.minutes})
        for resolution in sample.resolutions:
            await self.resolution(sample, meeting_id, resolution)

    async def resolution(
        self, meeting: SampleMeeting, meeting_id: str, sample: SampleResolution
    ) -> None:
        key = f"{meeting.key}:{sample.key}"
        created = await self.post(
            f"{self.resolutions}/resolutions",
            f"{key}:pass",
            {**sample.passed, "meeting_id": meeting_id},
            retry_on=MEETING_NOT_YET_KNOWN,
        )
        resolution_id = str(created["id"])
        self.report.created[f"resolution {key}"] = resolution_id
        base = f"{self.resolutions}/resolutions/{resolution_id}"
        if sample.circulate:
            await self.post(f"{base}/circulate", f"{key}:circulate", sample.circulate)
        for index, feedback in enumerate(sample.feedback):
            await self.post(
                f"{base}/feedback", f"{key}:feedback:{index}", feedback, Unit(feedback["unit"])
            )
        if sample.amend:
            await self.post(f"{base}/amend", f"{key}:amend", sample.amend)
        if sample.approve:
            await self.post(f"{base}/approve", f"{key}:approve", APPROVALS.get(key, {}))
        if sample.sign:
            await self.post(f"{base}/sign", f"{key}:sign", sample.sign)
        if sample.action_plan:
            await self.post(f"{base}/action-plan", f"{key}:action-plan", sample.action_plan)
        for index, report in enumerate(sample.progress):
            body = {name: value for name, value in report.items() if name != "unit"}
            await self.post(
                f"{base}/progress", f"{key}:progress:{index}", body, Unit(report["unit"])
            )
        if sample.close:
            await self.post(f"{base}/close", f"{key}:close", sample.close)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


async def seed(settings: Settings, meetings_url: str, resolutions_url: str) -> SeedReport:
    async with httpx.AsyncClient(timeout=30) as client:
        seeder = Seeder(client, settings, meetings_url, resolutions_url)
        for meeting in MEETINGS:
            await seeder.meeting(meeting)
        return seeder.report


def seed_command(
    meetings_url: Annotated[str, typer.Option(help="The meetings API")] = ("http://127.0.0.1:8001"),
    resolutions_url: Annotated[str, typer.Option(help="The resolutions API")] = (
        "http://127.0.0.1:8002"
    ),
) -> None:
    """Load the sample history (2015-2017) through the HTTP APIs; running it again changes
    nothing."""
    try:
        report = asyncio.run(seed(get_settings(), meetings_url, resolutions_url))
    except httpx.TransportError as error:
        raise SeedFailed(f"cannot reach the services ({error}); are they running?") from error
    typer.echo(
        f"sample history: {report.commands} commands, "
        f"{report.commands - report.replayed} applied, {report.replayed} already there"
    )
