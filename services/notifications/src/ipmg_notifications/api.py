"""HTTP: what was sent to whom, when, and why (read-only).

The secretariat, auditors and services see every delivery; a unit's focal person sees those
addressed to their own unit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict

from ipmg_contracts.notifications import Channel, NotificationKind
from ipmg_notifications.deliveries import DeliveryStatus
from ipmg_shared.actors import Actor, Unit
from ipmg_shared.guards import permitted, require
from ipmg_shared.policy import Action, Permission, Resource, allows, personal_data_unit
from ipmg_shared.runtime import ServiceContext

router = APIRouter(prefix="/notifications", tags=["notifications"])
READ = Permission(Resource.NOTIFICATION, Action.READ)
Reader = Annotated[Actor, Depends(permitted(READ))]

_COLUMNS = (
    "delivery_id, cause_event_id, cause_type, cause_source, kind, channel, unit, person, "
    "address, subject, status, round, attempts, last_error, outcome_event_id, created_at, "
    "finished_at"
)


class DeliveryView(BaseModel):
    model_config = ConfigDict(frozen=True)

    delivery_id: UUID
    cause_event_id: UUID
    cause_type: str
    cause_source: str
    kind: NotificationKind
    channel: Channel
    unit: Unit
    person: str | None
    address: str
    subject: str
    status: DeliveryStatus
    round: int
    attempts: int
    last_error: str | None
    outcome_event_id: UUID | None
    created_at: datetime
    finished_at: datetime | None


class DeliveryDetail(DeliveryView):
    body_text: str
    body_html: str | None


class DeliveryList(BaseModel):
    model_config = ConfigDict(frozen=True)

    items: list[DeliveryView]


def _visible_unit(actor: Actor, asked: Unit | None) -> Unit | None:
    """The unit filter the actor is held to (None: every unit)."""
    require(actor, READ, asked)
    return asked or personal_data_unit(actor, READ)


def _context(request: Request) -> ServiceContext:
    context: ServiceContext = request.app.state.context
    return context


@router.get("", response_model=DeliveryList)
async def list_notifications(
    request: Request,
    actor: Reader,
    cause: Annotated[UUID | None, Query(description="Only messages caused by this event")] = None,
    unit: Annotated[Unit | None, Query(description="Only messages to this unit")] = None,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeliveryList:
    """Deliveries, newest first."""
    context = _context(request)
    unit = _visible_unit(actor, unit)
    async with context.pool.acquire(timeout=context.settings.pool_acquire_timeout_s) as connection:
        rows = await connection.fetch(
            f"SELECT {_COLUMNS} FROM deliveries "
            "WHERE ($1::uuid IS NULL OR cause_event_id = $1) "
            "AND ($2::text IS NULL OR unit = $2) AND ($3::text IS NULL OR status = $3) "
            "ORDER BY created_at DESC, delivery_id LIMIT $4",
            cause,
            None if unit is None else unit.value,
            None if status is None else status.value,
            limit,
        )
    return DeliveryList(items=[DeliveryView.model_validate(dict(row)) for row in rows])


@router.get("/{delivery_id}", response_model=DeliveryDetail)
async def get_notification(request: Request, actor: Reader, delivery_id: UUID) -> DeliveryDetail:
    """One delivery with the text (and HTML) that was sent."""
    context = _context(request)
    async with context.pool.acquire(timeout=context.settings.pool_acquire_timeout_s) as connection:
        row = await connection.fetchrow(
            f"SELECT {_COLUMNS}, body_text, body_html FROM deliveries WHERE delivery_id = $1",
            delivery_id,
        )
    if row is None or not allows(actor, READ, Unit(row["unit"])):
        raise HTTPException(404, "no such notification")
    return DeliveryDetail.model_validate(dict(row))
