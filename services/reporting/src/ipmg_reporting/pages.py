"""Server-rendered HTML (Jinja2 templates in the package): the dashboard, the printable
quarterly report and the token prompt. Every page carries a strict Content-Security-Policy;
its one inline script runs by a per-response nonce."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ipmg_reporting.projections import unit_name
from ipmg_reporting.reports import REPORTING_TZ, QuarterlyReport
from ipmg_shared.canonical import parse_instant

PRIORITY_AREAS = {
    "cedaw": "CEDAW commitments",
    "independent_wdds": "Independent WDDs",
    "leadership_capacity": "Leadership capacity building",
    "national_policy": "National policy and action plans",
    "other": "Other",
}


def display_instant(instant: str | None) -> str:
    """A stored UTC instant as Pakistan's wall-clock time, to the minute."""
    if not instant:
        return ""
    local = parse_instant(instant).astimezone(REPORTING_TZ)
    return local.strftime("%Y-%m-%d %H:%M PKT")


def _words(slug: str | None) -> str:
    return "" if slug is None else slug.replace("_", " ")


environment = Environment(
    loader=PackageLoader("ipmg_reporting", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["instant"] = display_instant
environment.filters["unit_name"] = unit_name
environment.filters["words"] = _words
environment.filters["priority"] = lambda area: PRIORITY_AREAS.get(area, area)


def render(
    template: str, *, status: int = 200, headers: dict[str, str] | None = None, **context: Any
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    html = environment.get_template(template).render(nonce=nonce, **context)
    policy = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        f"script-src 'nonce-{nonce}'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Content-Security-Policy": policy,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            **(headers or {}),
        },
    )


def render_quarterly(report: QuarterlyReport) -> HTMLResponse:
    return render("quarterly.html", report=report)
