"""A stateful property test of the authorization policy against the four running services.

Hypothesis drives the write and read APIs with valid and invalid commands as the secretariat,
the focal persons of Punjab and Sindh and an auditor. After every step: no 5xx; a refused
command appended nothing to its service's store; whatever the policy forbids was refused, and
no read showed a focal person another unit's personal data. At the end, once reporting has
caught up, its live projection equals a rebuild and `ipmg audit verify` passes.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from ipmg_shared.actors import Actor, Role, Unit
from ipmg_shared.policy import REFUSED_FOR_OTHER_UNITS, Action, Permission, Resource, allows
from ipmg_shared.settings import WRITE_SOURCES, Settings
from tests.e2e.security.world import ACTIONS, World, principals
from tests.faults.conftest import audit_table, reporting_checkpoints, run_ipmg, stored_events
from tests.support.meetings import extraordinary_meeting
from tests.support.processes import ServiceProcess
from tests.support.reporting import projection_rows, row_differences
from tests.support.waiting import wait_until

pytestmark = pytest.mark.infra

ACTORS = {
    "secretariat": Actor(
        subject="secretariat@ncsw.example.org", unit=Unit.NCSW, role=Role.SECRETARIAT
    ),
    "punjab": Actor(
        subject="focal_person@punjab.example.org", unit=Unit.PUNJAB, role=Role.FOCAL_PERSON
    ),
    "sindh": Actor(
        subject="focal_person@sindh.example.org", unit=Unit.SINDH, role=Role.FOCAL_PERSON
    ),
    "auditor": Actor(subject="auditor@ncsw.example.org", unit=Unit.NCSW, role=Role.AUDITOR),
}
WHO = st.sampled_from(sorted(ACTORS))
UNITS = st.sampled_from([Unit.PUNJAB, Unit.SINDH])
ANY_UNIT = st.sampled_from([None, Unit.PUNJAB, Unit.SINDH, Unit.NCSW])
BUDGET = settings(
    max_examples=50,
    stateful_step_count=40,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def personal_marks(unit: Unit) -> list[str]:
    """How the names and addresses this test and the sample directory give a unit's people
    show in answers."""
    names = [f"{who} of {unit.value}" for who in ("Person", "Attendee", "Signatory")]
    return [*names, f"@{unit.value}.example.org", f".{unit.value}@example.org"]


@dataclass
class Harness:
    """The running services, the principals' tokens and a way to read each store's head."""

    urls: dict[str, str]
    tokens: dict[str, dict[str, str]]
    world: World
    heads: dict[str, asyncpg.Connection]
    loop: asyncio.AbstractEventLoop
    client: httpx.Client
    counts: dict[str, int] = field(
        default_factory=lambda: {"probes": 0, "5xx": 0, "forbidden allowed": 0, "writes": 0}
    )
    serial: Iterator[int] = field(default_factory=itertools.count)

    def head(self, service: str) -> int:
        query = self.heads[service].fetchval("SELECT coalesce(max(position), 0) FROM events")
        return int(self.loop.run_until_complete(query))


class PolicyMachine(RuleBasedStateMachine):
    harness: Harness  # set by the test before it runs

    meetings = Bundle("meetings")

    def __init__(self) -> None:
        super().__init__()
        self.last_status = 200

    # --- helpers -----------------------------------------------------------------------

    def _send(
        self,
        who: str,
        method: str,
        service: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        h = self.harness
        response = h.client.request(
            method,
            h.urls[service] + path,
            json=body,
            params=params,
            headers=h.tokens[who],
        )
        h.counts["probes"] += 1
        self.last_status = response.status_code
        if response.status_code >= 500:
            h.counts["5xx"] += 1
        return response

    def _command(
        self,
        who: str,
        service: str,
        path: str,
        body: dict[str, Any],
        permission: Permission,
        unit: Unit | None = None,
    ) -> httpx.Response:
        before = self.harness.head(service)
        response = self._send(who, "POST", service, path, body=body)
        after = self.harness.head(service)
        forbidden = not allows(ACTORS[who], permission, unit)
        if forbidden and response.status_code != 403:
            self.harness.counts["forbidden allowed"] += 1
        if response.is_success:
            self.harness.counts["writes"] += 1
            assert after > before, response.text
        else:
            assert after == before, f"{path} refused ({response.status_code}) but appended"
        if forbidden:
            assert response.status_code == 403, (who, path, response.text)
        else:
            assert response.status_code != 403, (who, path, response.text)
        return response

    def _read(
        self, who: str, service: str, path: str, permission: Permission, unit: Unit | None = None
    ) -> None:
        params = {} if unit is None else {"unit": unit.value}
        response = self._send(who, "GET", service, path, params=params)
        actor = ACTORS[who]
        forbidden = not allows(actor, permission) or (
            unit is not None
            and permission.resource in REFUSED_FOR_OTHER_UNITS
            and not allows(actor, permission, unit)
        )
        if forbidden and response.status_code != 403:
            self.harness.counts["forbidden allowed"] += 1
        assert (response.status_code == 403) is forbidden, (who, path, params, response.text)
        if forbidden or actor.role is not Role.FOCAL_PERSON:
            return
        others = [u for u in (Unit.PUNJAB, Unit.SINDH, Unit.NCSW) if u is not actor.unit]
        leaked = [mark for u in others for mark in personal_marks(u) if mark in response.text]
        if leaked:
            self.harness.counts["forbidden allowed"] += 1
        assert leaked == [], (who, path, params)

    def _tag(self) -> int:
        return next(self.harness.serial)

    # --- writes --------------------------------------------------------------------------

    @rule(target=meetings, who=WHO, host=UNITS, valid=st.booleans(), day=st.integers(1, 28))
    def schedule(self, who: str, host: Unit, valid: bool, day: int) -> Any:
        body = extraordinary_meeting(f"2017-03-{day:02d}", host.value, "Lahore")
        if not valid:
            body["scheduled_for"] = "the ides of March"
        response = self._command(
            who, "meetings", "/meetings", body, Permission(Resource.MEETING, Action.SCHEDULE)
        )
        return str(response.json()["id"]) if response.status_code == 201 else None

    @rule(meeting=meetings, who=WHO, valid=st.booleans())
    def reschedule(self, meeting: str | None, who: str, valid: bool) -> None:
        if meeting is None:
            return
        body: dict[str, Any] = {
            "scheduled_for": "2017-03-30",
            "host_unit": "sindh",
            "venue": "Karachi",
            "reason": f"Moved by {who}",
        }
        if not valid:
            body["unexpected"] = True
        self._command(
            who,
            "meetings",
            f"/meetings/{meeting}/reschedule",
            body,
            Permission(Resource.MEETING, Action.RESCHEDULE),
        )

    @rule(meeting=consumes(meetings), who=WHO)
    def cancel(self, meeting: str | None, who: str) -> None:
        if meeting is None:
            return
        self._command(
            who,
            "meetings",
            f"/meetings/{meeting}/cancel",
            {"reason": "No quorum"},
            Permission(Resource.MEETING, Action.CANCEL),
        )

    @rule(who=WHO, unit=UNITS, valid=st.booleans(), position=st.sampled_from(["endorse", "amend"]))
    def feedback(self, who: str, unit: Unit, valid: bool, position: str) -> None:
        body = {
            "unit": unit.value,
            "person": f"Person of {unit.value} {self._tag()}",
            "position": position if valid else "shrug",
        }
        self._command(
            who,
            "resolutions",
            f"/resolutions/{self.harness.world.circulated_id}/feedback",
            body,
            Permission(Resource.RESOLUTION, Action.GIVE_FEEDBACK),
            # A body that fails validation is refused before anyone's unit is considered.
            unit if valid else None,
        )

    @rule(who=WHO, unit=UNITS, valid=st.booleans(), percent=st.integers(0, 99))
    def progress(self, who: str, unit: Unit, valid: bool, percent: int) -> None:
        body = {
            "action_id": ACTIONS[unit],
            "status": "in_progress" if valid else "completed",  # completed needs 100%
            "percent": percent,
            "narrative": f"Work under way {self._tag()}",
        }
        self._command(
            who,
            "resolutions",
            f"/resolutions/{self.harness.world.planned_id}/progress",
            body,
            Permission(Resource.RESOLUTION, Action.REPORT_PROGRESS),
            # The action's unit: the one the command acts for, once its body is valid.
            unit if valid else None,
        )

    @rule(who=WHO)
    def circulate(self, who: str) -> None:
        """A secretariat-only command on a resolution, valid or refused by its state."""
        self._command(
            who,
            "resolutions",
            f"/resolutions/{self.harness.world.circulated_id}/circulate",
            {"participants": ["punjab", "sindh"], "feedback_due": "2016-09-30"},
            Permission(Resource.RESOLUTION, Action.CIRCULATE),
        )

    # --- reads ---------------------------------------------------------------------------

    @rule(who=WHO, history=st.booleans())
    def read_meeting(self, who: str, history: bool) -> None:
        path = f"/meetings/{self.harness.world.meeting_id}"
        resource = Resource.HISTORY if history else Resource.MEETING
        self._read(
            who,
            "meetings",
            path + ("/events" if history else ""),
            Permission(resource, Action.READ),
        )

    @rule(who=WHO, history=st.booleans(), planned=st.booleans())
    def read_resolution(self, who: str, history: bool, planned: bool) -> None:
        world = self.harness.world
        path = f"/resolutions/{world.planned_id if planned else world.circulated_id}"
        resource = Resource.HISTORY if history else Resource.RESOLUTION
        self._read(
            who,
            "resolutions",
            path + ("/events" if history else ""),
            Permission(resource, Action.READ),
        )

    @rule(
        who=WHO,
        path=st.sampled_from(
            [
                "/reports/resolutions",
                "/reports/recent",
                "/reports/timeline/sindh",
                "/reports/timeline/punjab",
                "/reports/quarterly/2016-Q4",
                "/reports/quarterly/2016-Q4.html",
            ]
        ),
    )
    def read_report(self, who: str, path: str) -> None:
        self._read(who, "reporting", path, Permission(Resource.REPORT, Action.READ))

    @rule(who=WHO)
    def read_timeline_of_resolution(self, who: str) -> None:
        path = f"/reports/timeline/{self.harness.world.circulated_id}"
        self._read(who, "reporting", path, Permission(Resource.REPORT, Action.READ))

    @rule(who=WHO)
    def read_dashboard(self, who: str) -> None:
        self._read(who, "reporting", "/", Permission(Resource.DASHBOARD, Action.READ))

    @rule(who=WHO, unit=ANY_UNIT, service=st.sampled_from(["notifications", "reporting"]))
    def read_notifications(self, who: str, unit: Unit | None, service: str) -> None:
        path = "/notifications" if service == "notifications" else "/reports/notifications"
        self._read(who, service, path, Permission(Resource.NOTIFICATION, Action.READ), unit)

    @invariant()
    def no_server_error(self) -> None:
        assert self.last_status < 500


@contextmanager
def harness(
    services: dict[str, ServiceProcess], migrated: Settings, world: World
) -> Iterator[Harness]:
    loop = asyncio.new_event_loop()
    connections = {
        name: loop.run_until_complete(
            asyncpg.connect(migrated.admin_dsn(migrated.service_database(name)))
        )
        for name in ("meetings", "resolutions")
    }
    try:
        with httpx.Client(timeout=20) as client:
            yield Harness(
                urls={name: process.url for name, process in services.items()},
                tokens=principals(migrated),
                world=world,
                heads=connections,
                loop=loop,
                client=client,
            )
    finally:
        for connection in connections.values():
            loop.run_until_complete(connection.close())
        loop.close()


def test_no_principal_reads_or_changes_what_the_policy_forbids(
    services: dict[str, ServiceProcess], migrated: Settings, world: World
) -> None:
    with harness(services, migrated, world) as h:
        PolicyMachine.harness = h
        run_state_machine_as_test(PolicyMachine, settings=BUDGET)
    print(f"\nstate machine: {h.counts}")
    assert h.counts["5xx"] == 0
    assert h.counts["forbidden allowed"] == 0
    assert h.counts["writes"] > 0
    assert h.counts["probes"] > 100
    end = asyncio.run(live_equals_rebuild_and_audit_passes(migrated))
    print(f"end check: {end}")
    assert end["rows compared"] > 0


async def settled_heads(settings: Settings) -> dict[str, int]:
    """Each store's head once reporting has applied it and no store has grown meanwhile
    (notifications may still be reacting to the last commands)."""
    last: dict[str, int] = {}

    async def settled() -> bool:
        nonlocal last
        heads = {}
        for source in WRITE_SOURCES:
            events = await stored_events(settings, source)
            heads[source] = events[-1].position if events else 0
        applied = await reporting_checkpoints(settings)
        caught_up = all(
            applied.get(source, (0, 0))[0] >= head for source, head in heads.items() if head
        )
        steady, last = heads == last, heads
        return caught_up and steady

    await wait_until(settled, timeout=120, interval=0.5)
    return last


async def live_equals_rebuild_and_audit_passes(settings: Settings) -> dict[str, int]:
    heads = await settled_heads(settings)
    live = await projection_rows(settings)
    (rebuild, _), (audit, _) = await asyncio.gather(
        run_ipmg(settings, "reporting", "rebuild"), run_ipmg(settings, "audit", "verify")
    )
    assert rebuild.returncode == 0, rebuild.stdout + rebuild.stderr
    assert audit.returncode == 0, audit.stdout + audit.stderr
    table = audit_table(audit.stdout)
    assert {source: row["result"] for source, row in table.items()} == dict.fromkeys(
        WRITE_SOURCES, "ok"
    ), audit.stdout
    assert {source: int(row["head position"]) for source, row in table.items()} == heads
    rebuilt = await projection_rows(settings)
    differences = row_differences(live, rebuilt)
    assert not differences, differences
    return {"events audited": sum(heads.values()), "rows compared": sum(map(len, live.values()))}
