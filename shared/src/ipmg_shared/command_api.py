"""HTTP routes for a write service's commands and queries, built from its aggregate.

Each command route takes the command's own fields as its JSON body (ids, actor and clock come
from the path, the token and the server), honours ``Idempotency-Key`` and ``If-Match``, and
answers with what was appended. Query routes return an aggregate's state and its history.
"""

# No `from __future__ import annotations` here: FastAPI reads the body type of each generated
# endpoint from its annotations at definition time.

from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field, create_model

from ipmg_shared.actors import Actor, Unit
from ipmg_shared.application import AggregateType, CommandContext, execute, load_existing
from ipmg_shared.envelope import Envelope
from ipmg_shared.guards import permitted, require
from ipmg_shared.idempotency import principal_command_id
from ipmg_shared.policy import (
    Action,
    Permission,
    Resource,
    personal_data_unit,
    withhold_personal_data,
)
from ipmg_shared.store import AppendResult, EventStore

# Filled by the server, never by the client.
SERVER_FIELDS = frozenset({"actor", "at"})
IDEMPOTENCY_KEY = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Makes a retried command safe: the first answer is returned again.",
    ),
]
IF_MATCH = Annotated[
    str | None,
    Header(
        alias="If-Match",
        pattern=r'^(W/)?"?[0-9]{1,9}"?$',
        description='The stream version the change is based on, e.g. "3" (the ETag of a GET).',
    ),
]

Enricher = Callable[[Request, dict[str, Any]], Awaitable[dict[str, Any]]]


class CommandAccepted(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: UUID
    stream_id: str
    stream_version: int = Field(description="The stream's version after this command")
    first_position: int
    last_position: int
    event_ids: list[str]


class AggregateView(BaseModel):
    id: UUID
    version: int
    state: dict[str, Any]


def body_model(command: type[BaseModel], exclude: Collection[str], name: str) -> type[BaseModel]:
    """The command's client-supplied fields, as a request body that refuses unknown fields."""
    fields: dict[str, Any] = {
        field_name: (info.annotation, info)
        for field_name, info in command.model_fields.items()
        if field_name not in SERVER_FIELDS and field_name not in exclude
    }
    model: type[BaseModel] = create_model(
        name, __config__=ConfigDict(extra="forbid", frozen=True), **fields
    )
    return model


def store_of(request: Request) -> EventStore:
    store: EventStore | None = request.app.state.context.store
    assert store is not None, "a write service has an event store"
    return store


def expected_version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    # The header's pattern has been checked by FastAPI: W/ and quotes are all that may wrap it.
    return int(if_match.removeprefix("W/").strip('"'))


def _accepted(
    aggregate: AggregateType[Any], result: AppendResult, response: Response
) -> dict[str, Any]:
    response.headers["ETag"] = f'"{result.stream_version}"'
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return {"id": aggregate.aggregate_id(result.stream_id), **result.to_json()}


def add_command_route(
    router: APIRouter,
    path: str,
    *,
    aggregate: AggregateType[Any],
    command: type[BaseModel],
    id_field: str,
    summary: str,
    permission: Permission,
    creates: bool = False,
    exclude: Collection[str] = (),
    enrich: Enricher | None = None,
) -> None:
    """POST ``path``: build ``command`` from the body and the path, run it, say what was appended.

    ``creates`` routes mint the aggregate id (the response's ``Location`` names it); others
    take it from the path parameter named ``id_field``. The policy's ``permission`` is
    checked before anything else, and again for the unit the body acts for, if it names one.
    """
    Body = body_model(command, {id_field, *exclude}, f"{command.__name__}Request")
    Allowed = Annotated[Actor, Depends(permitted(permission))]

    async def run(
        request: Request,
        response: Response,
        aggregate_id: UUID,
        body: BaseModel,
        actor: Any,
        idempotency_key: str | None,
        if_match: str | None,
    ) -> dict[str, Any]:
        fields = body.model_dump()
        acting_for = fields.get("unit")
        require(actor, permission, acting_for if isinstance(acting_for, Unit) else None)
        if enrich is not None:
            fields = await enrich(request, fields)
        built = command(**fields, **{id_field: aggregate_id}, actor=actor, at=datetime.now(UTC))
        context = CommandContext(
            actor=actor,
            correlation_id=_correlation_id(request),
            expected_version=expected_version(if_match),
            command_id=None
            if idempotency_key is None
            else principal_command_id(
                actor,
                request.url.path,
                idempotency_key,
                {"path": request.url.path, "body": body.model_dump(mode="json")},
            ),
        )
        result = await execute(store_of(request), aggregate, aggregate_id, built, context)
        if creates:
            response.headers["Location"] = (
                f"{request.url.path}/{aggregate.aggregate_id(result.stream_id)}"
            )
        return _accepted(aggregate, result, response)

    if creates:

        async def create(
            request: Request,
            response: Response,
            body: Body,  # type: ignore[valid-type]
            actor: Allowed,
            idempotency_key: IDEMPOTENCY_KEY = None,
        ) -> dict[str, Any]:
            return await run(request, response, uuid4(), body, actor, idempotency_key, None)

        router.add_api_route(
            path,
            create,
            methods=["POST"],
            status_code=201,
            response_model=CommandAccepted,
            summary=summary,
            responses=_ERRORS,
        )
        return

    async def change(
        request: Request,
        response: Response,
        aggregate_id: Annotated[UUID, _PathId],
        body: Body,  # type: ignore[valid-type]
        actor: Allowed,
        idempotency_key: IDEMPOTENCY_KEY = None,
        if_match: IF_MATCH = None,
    ) -> dict[str, Any]:
        return await run(request, response, aggregate_id, body, actor, idempotency_key, if_match)

    router.add_api_route(
        path.replace(f"{{{id_field}}}", "{aggregate_id}"),
        change,
        methods=["POST"],
        response_model=CommandAccepted,
        summary=summary,
        responses=_ERRORS,
    )


def add_query_routes(
    router: APIRouter, path: str, *, aggregate: AggregateType[Any], resource: Resource
) -> None:
    """GET ``path`` (state and version, with an ETag) and GET ``path``/events (its history).

    The state shows other units' personal data only to whom the policy lets see it; the
    history is the record as stored, for whom the policy lets read it whole.
    """
    route = path.replace(f"{{{aggregate.name}_id}}", "{aggregate_id}")
    read = Permission(resource, Action.READ)
    Reader = Annotated[Actor, Depends(permitted(read))]
    HistoryReader = Annotated[Actor, Depends(permitted(Permission(Resource.HISTORY, Action.READ)))]

    async def current(
        request: Request,
        response: Response,
        aggregate_id: Annotated[UUID, _PathId],
        actor: Reader,
    ) -> dict[str, Any]:
        state, version = await load_existing(store_of(request), aggregate, aggregate_id)
        response.headers["ETag"] = f'"{version}"'
        shown = withhold_personal_data(
            state.model_dump(mode="json"), personal_data_unit(actor, read)
        )
        return {"id": aggregate_id, "version": version, "state": shown}

    async def history(
        request: Request, aggregate_id: Annotated[UUID, _PathId], actor: HistoryReader
    ) -> list[dict[str, Any]]:
        await load_existing(store_of(request), aggregate, aggregate_id)
        envelopes = await store_of(request).read_stream(aggregate.stream_id(aggregate_id))
        return [envelope.to_json() for envelope in envelopes]

    router.add_api_route(
        route,
        current,
        methods=["GET"],
        response_model=AggregateView,
        summary=f"The {aggregate.name}'s current state",
        responses=_ERRORS,
    )
    router.add_api_route(
        f"{route}/events",
        history,
        methods=["GET"],
        response_model=list[Envelope],
        summary=f"Every event of the {aggregate.name}, in order",
        responses=_ERRORS,
    )


def _correlation_id(request: Request) -> UUID:
    supplied = request.headers.get("X-Correlation-Id")
    try:
        return UUID(supplied) if supplied else uuid4()
    except ValueError:
        return uuid4()


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    rule: str | None = None


_PathId = Field(description="The aggregate's id")
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {"application/problem+json": {}}}
    for status in (400, 401, 403, 404, 409, 413, 422, 503)
}
__all__ = ["CommandAccepted", "add_command_route", "add_query_routes", "body_model"]
