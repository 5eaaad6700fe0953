"""The authorization policy table, checked over every route of the four services running as
processes: a route the policy does not cover fails, and each principal kind is refused (403,
or 401 without a token) exactly where the table says."""

from __future__ import annotations

import httpx
import pytest

from ipmg_shared.auth import issue_token
from ipmg_shared.policy import Resource
from ipmg_shared.settings import Settings
from tests.e2e.security.policy_probes import (
    PRINCIPALS,
    SERVICES,
    Probe,
    Route,
    application,
    probes,
    routes_of,
)
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.infra


def every_route() -> list[Route]:
    found: list[Route] = []
    uncovered: list[str] = []
    for name in SERVICES:
        routes, unknown = routes_of(name, application(name))
        found += routes
        uncovered += unknown
        uncovered += [f"{r.service} {r.method} {r.path}" for r in routes if r.permission is None]
    assert uncovered == [], "routes the authorization policy does not cover"
    return found


def test_every_route_of_every_service_is_in_the_policy() -> None:
    routes = every_route()
    assert {route.service for route in routes} == set(SERVICES)
    assert len(routes) >= 40
    # What the path says is what the route declares: stored events are history, whoever
    # serves them; deliveries are notifications, in reporting too.
    for route in routes:
        assert route.permission is not None
        if route.path.endswith("/events"):
            assert route.permission.resource is Resource.HISTORY, route
        if "notifications" in route.path:
            assert route.permission.resource is Resource.NOTIFICATION, route


def test_every_route_answers_as_the_policy_says(
    services: dict[str, ServiceProcess], migrated: Settings
) -> None:
    tokens = {
        name: {
            "Authorization": "Bearer "
            + issue_token(migrated, subject=actor.subject, unit=actor.unit, role=actor.role)
        }
        for name, actor in PRINCIPALS.items()
        if actor is not None
    }
    sent = failed = forbidden_allowed = wrongly_refused = 0
    wrong: list[str] = []

    def send(client: httpx.Client, probe: Probe) -> int:
        base = services[probe.route.service].url
        response = client.request(
            probe.route.method,
            f"{base}{probe.path}",
            json=probe.body,
            params=probe.params,
            # As a browser's same-origin form would: the sign-in routes check it before the
            # policy's question arises.
            headers={**tokens.get(probe.principal, {}), "Sec-Fetch-Site": "same-origin"},
        )
        return response.status_code

    with httpx.Client(timeout=20) as client:
        for route in every_route():
            for probe in probes(route):
                status = send(client, probe)
                sent += 1
                refused = status == (401 if probe.principal == "anonymous" else 403)
                if status >= 500:
                    failed += 1
                    wrong.append(f"{probe}: {status}")
                elif probe.forbidden and not refused:
                    forbidden_allowed += 1
                    wrong.append(f"{probe}: {status}, the policy forbids it")
                elif not probe.forbidden and status in (401, 403):
                    wrongly_refused += 1
                    wrong.append(f"{probe}: {status}, the policy allows it")
    print(
        f"\npolicy probes sent: {sent}; 5xx: {failed}; forbidden allowed: {forbidden_allowed}; "
        f"allowed refused: {wrongly_refused}"
    )
    assert wrong == []
    assert sent > 300
