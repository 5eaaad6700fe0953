"""Probes generated from the authorization policy: every route of every service, each
principal kind, and the outcome the policy table says (403 or not)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from ipmg_meetings.main import service as meetings
from ipmg_notifications.main import service as notifications
from ipmg_reporting.main import service as reporting
from ipmg_resolutions.main import service as resolutions
from ipmg_shared.actors import Actor, Role, Unit
from ipmg_shared.api_docs import ASSETS_PATH
from ipmg_shared.guards import permission_of
from ipmg_shared.policy import REFUSED_FOR_OTHER_UNITS, Permission, Resource, allows
from ipmg_shared.runtime import ServiceRuntime
from ipmg_shared.settings import Settings

SERVICES = {
    "meetings": meetings,
    "resolutions": resolutions,
    "notifications": notifications,
    "reporting": reporting,
}
# A principal kind: a token's actor, or None for no token at all.
PRINCIPALS: dict[str, Actor | None] = {
    "secretariat": Actor(subject="staff@ncsw.example.org", unit=Unit.NCSW, role=Role.SECRETARIAT),
    "focal-punjab": Actor(
        subject="focal@punjab.example.org", unit=Unit.PUNJAB, role=Role.FOCAL_PERSON
    ),
    "auditor": Actor(subject="auditor@ncsw.example.org", unit=Unit.NCSW, role=Role.AUDITOR),
    "service": Actor.service("probe"),
    "secretariat-role-of-punjab": Actor(
        subject="staff@punjab.example.org", unit=Unit.PUNJAB, role=Role.SECRETARIAT
    ),
    "anonymous": None,
}
OTHER_UNIT = Unit.SINDH
PATH_VALUES = {"entity_id": "punjab", "quarter": "2016-Q1"}  # other parameters: a fresh UUID
# Field values for a body that names a unit: valid, so the unit is what decides.
BODY_SAMPLES: dict[str, Any] = {"person": "Probe person", "position": "endorse"}
FASTAPI_DOCUMENTS = ("openapi_url", "docs_url", "redoc_url", "swagger_ui_oauth2_redirect_url")


@dataclass(frozen=True)
class Route:
    service: str
    method: str
    path: str
    permission: Permission | None
    body_fields: dict[str, bool]  # name: required
    query: frozenset[str]


@dataclass(frozen=True)
class Probe:
    route: Route
    principal: str
    path: str
    body: dict[str, Any] | None
    params: dict[str, str]
    forbidden: bool  # the policy refuses it: 403 (401 without a token)

    def __str__(self) -> str:
        return f"{self.principal} {self.route.method} {self.path} {self.params or ''}"


def application(name: str) -> FastAPI:
    return ServiceRuntime(SERVICES[name], Settings()).http_app()


def routes_of(name: str, app: FastAPI) -> tuple[list[Route], list[str]]:
    """The app's routes, and the paths of those that are not FastAPI's own documents."""
    documents = {getattr(app, attribute) for attribute in FASTAPI_DOCUMENTS} | {ASSETS_PATH}
    found, unknown = [], []
    for context in iter_route_contexts(app.routes):
        dependant = getattr(context, "dependant", None)
        assert context.path is not None
        if dependant is None:
            if context.path not in documents:
                unknown.append(f"{name} {context.path}")
            continue
        body = getattr(context, "body_field", None)
        fields: dict[str, bool] = {}
        if body is not None:
            model = body.field_info.annotation
            fields = {key: info.is_required() for key, info in model.model_fields.items()}
        for method in sorted(context.methods or ()):
            found.append(
                Route(
                    name,
                    method,
                    context.path,
                    permission_of(dependant),
                    fields,
                    frozenset(param.name for param in dependant.query_params),
                )
            )
    return found, unknown


def _path(template: str) -> str:
    path = template
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        name = path[start + 1 : end]
        path = path[:start] + PATH_VALUES.get(name, str(uuid4())) + path[end + 1 :]
    return path


def probes(route: Route) -> Iterator[Probe]:
    """For each principal kind: the route as such, and naming another unit where it can."""
    permission = route.permission
    assert permission is not None
    for name, actor in PRINCIPALS.items():
        public = permission.resource is Resource.OPERATIONS
        plain = not public if actor is None else not allows(actor, permission)
        body: dict[str, Any] | None = {} if route.method == "POST" else None
        yield Probe(route, name, _path(route.path), body, {}, plain)
        if actor is None:
            continue
        if "unit" in route.query:
            refused = permission.resource in REFUSED_FOR_OTHER_UNITS and not allows(
                actor, permission, OTHER_UNIT
            )
            yield Probe(
                route,
                name,
                _path(route.path),
                None,
                {"unit": OTHER_UNIT.value},
                plain or refused,
            )
        if "unit" in route.body_fields:
            named = {"unit": OTHER_UNIT.value}
            for field, required in route.body_fields.items():
                if required and field != "unit":
                    named[field] = BODY_SAMPLES[field]
            yield Probe(
                route,
                name,
                _path(route.path),
                named,
                {},
                not allows(actor, permission, OTHER_UNIT),
            )
