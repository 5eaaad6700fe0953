"""The reporting HTTP API: JSON reports under ``/reports``, each answering ``?as_of=``.

Every route needs a valid bearer token and reads as the authorization policy says: a focal
person sees other units' personal data withheld, and only their own unit's notifications. The
quarterly exports (CSV and a printable page) also accept the dashboard's cookie, since browsers
open them from its links.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict

from ipmg_contracts.notifications import NotificationKind
from ipmg_contracts.resolutions import PriorityArea, ResolutionStatus
from ipmg_reporting.as_of_replays import AsOfRateLimit, AsOfRateLimited, AsOfReplays
from ipmg_reporting.auth import browser_actor
from ipmg_reporting.live import DocumentsUnreadable, ProjectionReader, Snapshot
from ipmg_reporting.pages import render_quarterly
from ipmg_reporting.personal import withheld, withheld_all, withheld_timeline
from ipmg_reporting.projections import TimelineEntry
from ipmg_reporting.reports import (
    MeetingRow,
    NotificationRow,
    OverdueAction,
    QuarterlyReport,
    TrackerRow,
    UnitScorecard,
    meeting_history,
    notification_log,
    overdue_actions,
    quarter_csv_rows,
    quarterly_report,
    quarters,
    reference_day,
    scorecards,
    tracker,
)
from ipmg_shared.actors import Actor, Unit
from ipmg_shared.guards import permitted, require
from ipmg_shared.plausible import PlausibleInstant, PlausibleQuarter
from ipmg_shared.policy import Action, Permission, Resource, personal_data_unit
from ipmg_shared.runtime import ServiceContext

AS_OF_HELP = (
    "Answer with the state at this instant (RFC 3339 with a time zone), computed by the same "
    "projection code over the events recorded up to it. Default: now, from the live projection."
)

router = APIRouter(prefix="/reports", tags=["reports"])
READ = Permission(Resource.REPORT, Action.READ)
READ_NOTIFICATIONS = Permission(Resource.NOTIFICATION, Action.READ)
CurrentActor = Annotated[Actor, Depends(permitted(READ))]
BrowserActor = Annotated[Actor, Depends(permitted(READ, authenticate=browser_actor))]
NotificationReader = Annotated[Actor, Depends(permitted(READ_NOTIFICATIONS))]


def as_of_instant(
    as_of: Annotated[PlausibleInstant | None, Query(description=AS_OF_HELP)] = None,
) -> datetime | None:
    return as_of


AsOf = Annotated[datetime | None, Depends(as_of_instant)]
QuarterParam = Annotated[PlausibleQuarter, Path(examples=["2016-Q1"])]


def projection_reader(request: Request) -> ProjectionReader:
    context: ServiceContext = request.app.state.context
    reader = context.extras.get("projection_reader")
    if not isinstance(reader, ProjectionReader):
        settings = context.settings
        reader = ProjectionReader(
            context.pool,
            acquire_timeout_s=settings.pool_acquire_timeout_s,
            replays=AsOfReplays(
                concurrency=settings.reporting_as_of_concurrency,
                cache_size=settings.reporting_as_of_cache_size,
            ),
            rate_limit=AsOfRateLimit(settings.reporting_as_of_per_minute),
        )
        context.extras["projection_reader"] = reader
    return reader


Reader = Annotated[ProjectionReader, Depends(projection_reader)]


async def read_snapshot(reader: ProjectionReader, as_of: datetime | None, actor: Actor) -> Snapshot:
    admit(reader, actor, as_of)
    try:
        return await reader.snapshot(as_of)
    except DocumentsUnreadable as error:
        raise HTTPException(
            503, "the projection is being rebuilt for this version; retry shortly"
        ) from error


def admit(reader: ProjectionReader, actor: Actor, as_of: datetime | None) -> None:
    try:
        reader.admit(actor.subject, as_of)
    except AsOfRateLimited as refused:
        raise HTTPException(
            429, "Too many as-of requests", headers={"Retry-After": str(refused.retry_after_s)}
        ) from refused


@router.get("/resolutions", response_model=list[TrackerRow])
async def resolution_tracker(
    actor: CurrentActor,
    reader: Reader,
    as_of: AsOf,
    unit: Unit | None = None,
    status: ResolutionStatus | None = None,
    priority_area: PriorityArea | None = None,
) -> list[TrackerRow]:
    """Every resolution: state, meeting, priority area, feedback, signatories, actions."""
    snap = await read_snapshot(reader, as_of, actor)
    rows = tracker(
        snap.documents,
        reference_day(snap.instant),
        unit=None if unit is None else unit.value,
        status=None if status is None else status.value,
        priority_area=None if priority_area is None else priority_area.value,
    )
    return withheld_all(rows, personal_data_unit(actor, READ))


@router.get("/resolutions/{resolution_id}", response_model=TrackerRow)
async def one_resolution(
    resolution_id: str, actor: CurrentActor, reader: Reader, as_of: AsOf
) -> TrackerRow:
    snap = await read_snapshot(reader, as_of, actor)
    for row in tracker(snap.documents, reference_day(snap.instant)):
        if row.resolution_id == resolution_id:
            return withheld(row, personal_data_unit(actor, READ))
    raise HTTPException(404, f"no resolution {resolution_id} (as of the given instant)")


@router.get("/scorecards", response_model=list[UnitScorecard])
async def unit_scorecards(
    actor: CurrentActor,
    reader: Reader,
    as_of: AsOf,
    quarter: Annotated[PlausibleQuarter | None, Query(examples=["2016-Q1"])] = None,
) -> list[UnitScorecard]:
    """Per quarter and unit: actions assigned, completed, in progress, blocked, overdue,
    on-time completion rate, and feedback turnaround."""
    snap = await read_snapshot(reader, as_of, actor)
    return scorecards(snap.documents, reference_day(snap.instant), quarter)


@router.get("/meetings", response_model=list[MeetingRow])
async def meetings(
    actor: CurrentActor,
    reader: Reader,
    as_of: AsOf,
    quarter: Annotated[PlausibleQuarter | None, Query(examples=["2016-Q1"])] = None,
) -> list[MeetingRow]:
    """Meeting history: quarter, host (the rotation), date, occasion, attendance per unit."""
    snap = await read_snapshot(reader, as_of, actor)
    return meeting_history(snap.documents, quarter)


@router.get("/overdue", response_model=list[OverdueAction])
async def overdue(
    actor: CurrentActor, reader: Reader, as_of: AsOf, unit: Unit | None = None
) -> list[OverdueAction]:
    """Open actions past their due day: what is late, by how long, which unit."""
    snap = await read_snapshot(reader, as_of, actor)
    return overdue_actions(
        snap.documents, reference_day(snap.instant), unit=None if unit is None else unit.value
    )


class DeliveryStatus(StrEnum):
    SENT = "sent"
    FAILED = "failed"


@router.get("/notifications", response_model=list[NotificationRow])
async def notifications(
    actor: NotificationReader,
    reader: Reader,
    as_of: AsOf,
    unit: Unit | None = None,
    kind: NotificationKind | None = None,
    status: DeliveryStatus | None = None,
) -> list[NotificationRow]:
    """The notifications log: each delivery (one message, one recipient, one channel), what
    called for it, its attempts and outcome; the latest first. A focal person sees their own
    unit's only, as the notifications service shows them."""
    require(actor, READ_NOTIFICATIONS, unit)
    unit = unit or personal_data_unit(actor, READ_NOTIFICATIONS)
    snap = await read_snapshot(reader, as_of, actor)
    return notification_log(
        snap.documents,
        unit=None if unit is None else unit.value,
        kind=None if kind is None else kind.value,
        status=None if status is None else status.value,
    )


@router.get("/timeline/{entity_id}", response_model=list[TimelineEntry])
async def timeline(
    entity_id: str, actor: CurrentActor, reader: Reader, as_of: AsOf
) -> list[TimelineEntry]:
    """Every event of an entity (a meeting or resolution id, or a unit slug), oldest first,
    with actor, time, position and a one-line summary."""
    admit(reader, actor, as_of)
    return withheld_timeline(
        await reader.timeline_of(entity_id, as_of), personal_data_unit(actor, READ)
    )


@router.get("/recent", response_model=list[TimelineEntry])
async def recent(
    actor: CurrentActor,
    reader: Reader,
    as_of: AsOf,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[TimelineEntry]:
    """The latest events of every entity, newest first."""
    snap = await read_snapshot(reader, as_of, actor)
    return withheld_timeline(
        await reader.recent_events(snap, limit), personal_data_unit(actor, READ)
    )


@router.get("/quarters", response_model=list[str])
async def known_quarters(actor: CurrentActor, reader: Reader, as_of: AsOf) -> list[str]:
    """Quarters with a meeting, an action plan or a circulation, oldest first."""
    snap = await read_snapshot(reader, as_of, actor)
    return quarters(snap.documents)


@router.get("/quarterly/{quarter}.csv", response_class=Response)
async def quarterly_csv(
    quarter: QuarterParam, actor: BrowserActor, reader: Reader, as_of: AsOf
) -> Response:
    """The quarterly report as CSV: one row per action of the quarter's action plans."""
    report = await _quarterly(reader, quarter, as_of, actor)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(quarter_csv_rows(report))
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="ipmg-{quarter}.csv"'},
    )


@router.get("/quarterly/{quarter}.html", response_class=HTMLResponse)
async def quarterly_html(
    quarter: QuarterParam, actor: BrowserActor, reader: Reader, as_of: AsOf
) -> HTMLResponse:
    """The quarterly report as a printable page."""
    report = await _quarterly(reader, quarter, as_of, actor)
    return render_quarterly(withheld(report, personal_data_unit(actor, READ)))


@router.get("/quarterly/{quarter}", response_model=QuarterlyReport)
async def quarterly_json(
    quarter: QuarterParam, actor: CurrentActor, reader: Reader, as_of: AsOf
) -> QuarterlyReport:
    """The quarterly report: its meetings, resolutions passed, actions and scorecards."""
    return withheld(
        await _quarterly(reader, quarter, as_of, actor), personal_data_unit(actor, READ)
    )


async def _quarterly(
    reader: ProjectionReader, quarter: str, as_of: datetime | None, actor: Actor
) -> QuarterlyReport:
    snap = await read_snapshot(reader, as_of, actor)
    return quarterly_report(snap.documents, quarter, snap.instant)


class SourceProgressOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    source: str
    last_position: int
    events_applied: int


class ProjectionStatusOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: int | None
    code_version: int
    built_at: datetime | None
    events_logged: int
    sources: list[SourceProgressOut]


@router.get("/status", response_model=ProjectionStatusOut)
async def projection_status(actor: CurrentActor, reader: Reader) -> ProjectionStatusOut:
    """The live projection: its version, and how far it has applied each source."""
    status = await reader.status()
    return ProjectionStatusOut(
        version=status.version,
        code_version=status.code_version,
        built_at=status.built_at,
        events_logged=status.events_logged,
        sources=[
            SourceProgressOut(
                source=s.source, last_position=s.last_position, events_applied=s.events_applied
            )
            for s in status.sources
        ],
    )
