"""Extreme and malformed values against every GET route of every service (reporting's JSON,
CSV, HTML and dashboard included) and every command route of the write services: a client
never causes a 5xx, and an implausible date, instant or quarter is refused naming its rule."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import httpx
import pytest

from ipmg_shared.settings import Settings
from tests.support.processes import ServiceProcess, running_service
from tests.support.tokens import secretariat

pytestmark = pytest.mark.infra

EXTREMES = [
    "-1",
    "0",
    "1448496000",
    "99999999999999999999",
    "0001-01-01",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "9999-12-31",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59.999999Z",
    "2016-02-30T00:00Z",
    "2016-03-31T23:59:59",
    "0000-Q1",
    "0001-Q1",
    "9999-Q4",
    "2016-Q1",
    "2016-Q5",
    "2009-Q1",
    "2099-Q4",
    "2009-03-31T19:00:00Z",  # the first instant inside the window
    "2099-12-31T23:59:59+14:00",  # near the last
    "2099-12-31",
    "nan",
    "",
    "x" * 300,
]
DATE_VALUES: list[Any] = [
    1448496000,
    -1,
    1.5e300,
    True,
    "2015-11-26T00:00:00",
    "0001-01-01",
    "9999-12-31",
    "2015-02-29",
    "",
    None,
]
DATE_FIELDS = {"scheduled_for", "held_on", "feedback_due", "signed_on", "due_on"}


@pytest.fixture(scope="module")
def reporting(migrated: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("reporting-logs")
    with running_service("reporting", migrated, logs) as service:
        service.wait_ready()
        yield service.url


@pytest.fixture(scope="module")
def notifications(migrated: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("notifications-logs")
    with running_service("notifications", migrated, logs) as service:
        service.wait_ready()
        yield service.url


def get_routes(client: httpx.Client, url: str) -> list[tuple[str, list[dict[str, Any]]]]:
    document = client.get(f"{url}/openapi.json").json()
    return [
        (path, operation.get("parameters", []))
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method == "get"
    ]


# The dashboard is left out of reporting's API document.
DASHBOARD = (
    "/",
    [{"name": name, "in": "query"} for name in ("as_of", "quarter", "unit", "entity")],
)


def probes(path: str, parameters: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, str]]]:
    """Each path and query parameter set to each extreme value in turn."""
    in_path = [p["name"] for p in parameters if p["in"] == "path"]
    in_query = [p["name"] for p in parameters if p["in"] == "query"]

    def filled(value: str) -> str:
        return re.sub(r"\{[^}]+\}", value or "x", path)

    for value in EXTREMES:
        if in_path:
            yield filled(value), {}
        for name in in_query:
            yield filled("2016-Q1"), {name: value}


def sweep(client: httpx.Client, url: str, routes: list[Any]) -> tuple[int, list[Any]]:
    """Every probe of every route: how many were sent, and those answered 5xx."""
    sent, failures = 0, []
    for path, parameters in routes:
        for target, params in probes(path, parameters):
            response = client.get(f"{url}{target}", params=params)
            sent += 1
            if response.status_code >= 500:
                failures.append((target, params, response.status_code))
    return sent, failures


def test_no_reporting_route_answers_5xx(reporting: str, migrated: Settings) -> None:
    with httpx.Client(timeout=30, headers=secretariat(migrated)) as client:
        routes = [*get_routes(client, reporting), DASHBOARD]
        assert any(path.endswith(".csv") for path, _ in routes)
        sent, failures = sweep(client, reporting, routes)
    assert sent > 300
    assert failures == []


def test_no_get_route_of_another_service_answers_5xx(
    write_services: dict[str, ServiceProcess], notifications: str, migrated: Settings
) -> None:
    urls = [notifications, *(service.url for service in write_services.values())]
    with httpx.Client(timeout=30, headers=secretariat(migrated)) as client:
        for url in urls:
            sent, failures = sweep(client, url, get_routes(client, url))
            assert sent > 20, url
            assert failures == [], url


@pytest.mark.parametrize(
    ("path", "params", "rule"),
    [
        ("/reports/resolutions", {"as_of": "-1"}, "instant.format"),
        ("/reports/resolutions", {"as_of": "2016-03-31T23:59:59"}, "instant.format"),
        ("/reports/overdue", {"as_of": "0001-01-01T00:00:00+14:00"}, "instant.before_founding"),
        ("/reports/meetings", {"as_of": "9999-12-31T23:59:59-14:00"}, "instant.beyond_window"),
        ("/reports/scorecards", {"quarter": "0000-Q1"}, "quarter.out_of_window"),
        ("/reports/quarterly/9999-Q4", {}, "quarter.out_of_window"),
        ("/reports/quarterly/9999-Q4.csv", {}, "quarter.out_of_window"),
        ("/reports/quarterly/2016-Q9.html", {}, "quarter.format"),
    ],
)
def test_an_implausible_query_is_refused_naming_its_rule(
    reporting: str, migrated: Settings, path: str, params: dict[str, str], rule: str
) -> None:
    response = httpx.get(f"{reporting}{path}", params=params, headers=secretariat(migrated))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["rule"] == rule


@pytest.mark.parametrize("as_of", ["0001-01-01T00:00+14:00", "9999-12-31T23:59-14:00", "-1"])
def test_the_dashboard_refuses_an_implausible_instant_with_a_page(
    reporting: str, migrated: Settings, as_of: str
) -> None:
    response = httpx.get(f"{reporting}/", params={"as_of": as_of}, headers=secretariat(migrated))
    assert response.status_code == 422
    assert "Content-Security-Policy" in response.headers


def command_routes(client: httpx.Client, url: str) -> list[tuple[str, dict[str, Any]]]:
    document = client.get(f"{url}/openapi.json").json()
    routes = []
    for path, item in document["paths"].items():
        operation = item.get("post")
        if operation is None:
            continue
        reference = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        routes.append((path, document["components"]["schemas"][reference.split("/")[-1]]))
    return routes


def bodies_with_extreme_dates(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The route's date fields (top level, or an action's) set to each extreme value."""
    for name in schema.get("properties", {}):
        for value in DATE_VALUES:
            if name in DATE_FIELDS:
                yield {name: value}
            if name == "actions":
                action = {"action_id": "a1", "unit": "punjab", "description": "d", "due_on": value}
                yield {"quarter": "2016-Q1", "actions": [action]}
            if name == "quarter":
                yield {name: str(value)}


def test_no_command_route_answers_5xx_for_extreme_dates(
    write_services: dict[str, ServiceProcess], migrated: Settings
) -> None:
    sent = 0
    with httpx.Client(timeout=30, headers=secretariat(migrated)) as client:
        for service in write_services.values():
            for path, schema in command_routes(client, service.url):
                target = re.sub(r"\{[^}]+\}", str(uuid4()), path)
                for body in bodies_with_extreme_dates(schema):
                    response = client.post(f"{service.url}{target}", json=body)
                    sent += 1
                    assert response.status_code < 500, (target, body, response.text)
    assert sent >= 50


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ({"scheduled_for": 1448496000}, "date.format"),  # a Unix timestamp is not a date
        ({"scheduled_for": "2015-11-26T00:00:00"}, "date.format"),
        ({"scheduled_for": "2009-03-31"}, "date.before_founding"),
        ({"scheduled_for": "9999-12-31"}, "date.beyond_window"),
        ({"scheduled_for": "2095-01-01"}, "date.too_far_ahead"),
    ],
)
def test_an_implausible_meeting_date_is_refused_naming_its_rule(
    write_services: dict[str, ServiceProcess], migrated: Settings, body: dict[str, Any], rule: str
) -> None:
    response = httpx.post(
        f"{write_services['meetings'].url}/meetings",
        json={"host_unit": "ajk", "venue": "Muzaffarabad", **body},
        headers=secretariat(migrated),
    )
    assert response.status_code == 422, response.text
    assert response.json()["rule"] == rule
