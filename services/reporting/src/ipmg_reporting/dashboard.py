"""The dashboard at ``/``: tracker, unit scorecards with a chart per quarter, overdue actions
and a timeline, server-rendered; a few lines of JavaScript filter it by unit.

Without a valid token it shows the sign-in form (401) and nothing else; signing in keeps the
token in an HttpOnly cookie (``ipmg_reporting.signin``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic_core import PydanticCustomError

from ipmg_reporting.api import projection_reader
from ipmg_reporting.as_of_replays import AsOfRateLimited
from ipmg_reporting.auth import TOKEN_COOKIE, bearer_scheme, browser_token, optional_browser_actor
from ipmg_reporting.charts import BarChart, scorecard_chart
from ipmg_reporting.live import DocumentsUnreadable, ProjectionStatus
from ipmg_reporting.pages import render
from ipmg_reporting.personal import withheld_all, withheld_timeline
from ipmg_reporting.projections import TimelineEntry, unit_name
from ipmg_reporting.reports import (
    REPORTING_TZ,
    OverdueAction,
    TrackerRow,
    UnitScorecard,
    meeting_history,
    overdue_actions,
    quarter_of,
    quarters,
    reference_day,
    scorecards,
    tracker,
)
from ipmg_shared.actors import Actor, Unit
from ipmg_shared.auth import AuthenticationFailed, token_verifier
from ipmg_shared.guards import permitted
from ipmg_shared.plausible import plausible_instant
from ipmg_shared.policy import Action, Permission, Resource, personal_data_unit

CHARTED_QUARTERS = 8
TIMELINE_LENGTH = 40

router = APIRouter(include_in_schema=False)
READ = Permission(Resource.DASHBOARD, Action.READ)


@dataclass(frozen=True)
class DashboardView:
    actor: Actor
    as_of: datetime | None
    as_of_text: str
    today: str
    status: ProjectionStatus | None
    units: tuple[tuple[str, str], ...]
    unit: str
    rows: tuple[TrackerRow, ...]
    quarter: str | None
    quarters: tuple[str, ...]
    cards: tuple[UnitScorecard, ...]
    charts: tuple[BarChart, ...]
    overdue: tuple[OverdueAction, ...]
    meetings: int
    entity: str | None
    timeline: tuple[TimelineEntry, ...]


# The page asks for a token itself; the policy is checked whenever one is given.
@router.get(
    "/",
    response_class=HTMLResponse,
    dependencies=[Depends(permitted(READ, authenticate=optional_browser_actor))],
)
async def dashboard(
    request: Request,
    token: str | None = None,
    as_of: Annotated[str | None, Query(max_length=64)] = None,
    quarter: Annotated[str | None, Query(max_length=16)] = None,
    unit: Annotated[str | None, Query(max_length=40)] = None,
    entity: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    if token:  # an address is kept in logs and history: a token is posted, never put there
        return render(
            "login.html",
            status=400,
            message="a token in the address is refused: paste it into the form below",
            ask_token=True,
        )
    credentials: HTTPAuthorizationCredentials | None = await bearer_scheme(request)
    found = browser_token(credentials, request.cookies.get(TOKEN_COOKIE))
    if found is None:
        return render("login.html", status=401, message=None, ask_token=True)
    try:
        actor = await token_verifier(request.app).actor(found)
    except AuthenticationFailed as error:
        return render("login.html", status=401, message=error.reason, ask_token=True)
    instant = _parse_as_of(as_of)
    if isinstance(instant, str):
        return render("login.html", status=422, message=instant, ask_token=False)
    reader = projection_reader(request)
    try:
        reader.admit(actor.subject, instant)
    except AsOfRateLimited as refused:
        return render(
            "login.html",
            status=429,
            headers={"Retry-After": str(refused.retry_after_s)},
            message=f"{refused}",
            ask_token=False,
        )
    try:
        snap = await reader.snapshot(instant)
    except DocumentsUnreadable:
        return render(
            "login.html",
            status=503,
            message="the projection is being rebuilt; retry shortly",
            ask_token=False,
        )
    today = reference_day(snap.instant)
    documents = snap.documents
    known = quarters(documents)
    chosen = quarter if quarter in known else _default_quarter(known, quarter_of(today))
    cards = scorecards(documents, today)
    charted = [q for q in known if any(card.quarter == q for card in cards)][-CHARTED_QUARTERS:]
    if entity:
        timeline = (
            snap.model.timeline_of(entity)
            if snap.model is not None  # already folded to the instant: no second pass
            else await reader.timeline_of(entity, None)
        )
    else:
        timeline = await reader.recent_events(snap, TIMELINE_LENGTH)
    own_unit = personal_data_unit(actor, READ)
    view = DashboardView(
        actor=actor,
        as_of=instant,
        as_of_text=as_of or "",
        today=today.isoformat(),
        status=None if instant is not None else await reader.status(),
        units=tuple((u.value, unit_name(u.value)) for u in Unit),
        unit=unit if unit in {u.value for u in Unit} else "",
        rows=tuple(withheld_all(tracker(documents, today), own_unit)),
        quarter=chosen,
        quarters=tuple(known),
        cards=tuple(card for card in cards if card.quarter == chosen),
        charts=tuple(scorecard_chart(q, cards) for q in reversed(charted)),
        overdue=tuple(overdue_actions(documents, today)),
        meetings=len(meeting_history(documents)),
        entity=entity,
        timeline=tuple(withheld_timeline(timeline, own_unit)),
    )
    return render("dashboard.html", view=view, query=_query_keeper(as_of, chosen, unit))


def _parse_as_of(text: str | None) -> datetime | str | None:
    """An instant from the form; without a zone it is Pakistan's time. A str is an error."""
    if not text:
        return None
    try:
        instant = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return f"as of {text!r} is not a date and time such as 2016-03-31T23:59+05:00"
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=REPORTING_TZ)
    try:
        return plausible_instant(instant)
    except PydanticCustomError as error:
        return f"as of {text!r}: {error.message()}"


def _default_quarter(known: list[str], current: str) -> str | None:
    if current in known:
        return current
    earlier = [q for q in known if q <= current]
    return earlier[-1] if earlier else (known[-1] if known else None)


def _query_keeper(as_of: str | None, quarter: str | None, unit: str | None) -> str:
    """Query string that keeps the page's as-of and quarter in its own links."""
    kept = {"as_of": as_of, "quarter": quarter, "unit": unit}
    return urlencode({name: value for name, value in kept.items() if value})
