"""HTTP API of the resolutions service: the resolution lifecycle as commands, and its state."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ipmg_resolutions.domain import (
    AdoptActionPlan,
    AmendResolution,
    ApproveResolution,
    CirculateResolution,
    CloseResolution,
    Command,
    GiveFeedback,
    PassResolution,
    ReportProgress,
    ResolutionState,
    SignResolution,
    decide,
    evolve,
)
from ipmg_resolutions.handlers import meeting_facts, numbers_taken, resolution_exists
from ipmg_shared.application import AggregateType
from ipmg_shared.command_api import add_command_route, add_query_routes
from ipmg_shared.policy import Action, Permission, Resource
from ipmg_shared.runtime import ServiceContext

RESOLUTION: AggregateType[ResolutionState] = AggregateType(
    name="resolution", initial=ResolutionState.initial, evolve=evolve, decide=decide
)


async def with_meeting_facts(request: Request, fields: dict[str, Any]) -> dict[str, Any]:
    """Passing needs to know whether the meeting was held and which numbers it has used."""
    context: ServiceContext = request.app.state.context
    async with context.pool.acquire(timeout=context.settings.pool_acquire_timeout_s) as db:
        facts = await meeting_facts(db, fields["meeting_id"])
        taken = await numbers_taken(db, fields["meeting_id"])
    return {**fields, "meeting": facts, "numbers_taken": taken}


async def with_successor(request: Request, fields: dict[str, Any]) -> dict[str, Any]:
    """Superseding needs to know that the successor exists: from this service's own store."""
    if fields.get("superseded_by") is None:
        return fields
    context: ServiceContext = request.app.state.context
    async with context.pool.acquire(timeout=context.settings.pool_acquire_timeout_s) as db:
        exists = await resolution_exists(db, fields["superseded_by"])
    return {**fields, "successor_exists": exists}


def router() -> APIRouter:
    routes = APIRouter(tags=["resolutions"])
    add_command_route(
        routes,
        "/resolutions",
        aggregate=RESOLUTION,
        command=PassResolution,
        id_field="resolution_id",
        creates=True,
        exclude={"meeting", "numbers_taken"},
        enrich=with_meeting_facts,
        summary="Pass a joint resolution at a held meeting",
        permission=Permission(Resource.RESOLUTION, Action.PASS),
    )
    changes: list[tuple[str, type[Command], Action, str]] = [
        (
            "circulate",
            CirculateResolution,
            Action.CIRCULATE,
            "Circulate to participants for feedback",
        ),
        (
            "feedback",
            GiveFeedback,
            Action.GIVE_FEEDBACK,
            "Give a unit's feedback (endorse, amend or object)",
        ),
        ("amend", AmendResolution, Action.AMEND, "Amend the title or text while circulated"),
        ("approve", ApproveResolution, Action.APPROVE, "Approve after circulation"),
        ("sign", SignResolution, Action.SIGN, "Record the signatures"),
        (
            "action-plan",
            AdoptActionPlan,
            Action.ADOPT_ACTION_PLAN,
            "Adopt the action plan for the next quarter",
        ),
        ("progress", ReportProgress, Action.REPORT_PROGRESS, "Report progress on an action"),
    ]
    for path, command, action, summary in changes:
        add_command_route(
            routes,
            f"/resolutions/{{resolution_id}}/{path}",
            aggregate=RESOLUTION,
            command=command,
            id_field="resolution_id",
            summary=summary,
            permission=Permission(Resource.RESOLUTION, action),
        )
    add_command_route(
        routes,
        "/resolutions/{resolution_id}/close",
        aggregate=RESOLUTION,
        command=CloseResolution,
        id_field="resolution_id",
        exclude={"successor_exists"},
        enrich=with_successor,
        summary="Close as implemented, withdrawn or superseded",
        permission=Permission(Resource.RESOLUTION, Action.CLOSE),
    )
    add_query_routes(
        routes, "/resolutions/{resolution_id}", aggregate=RESOLUTION, resource=Resource.RESOLUTION
    )
    return routes
