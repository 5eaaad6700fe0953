"""Notices into readable messages: plain text and HTML from the package's Jinja2 templates.

Each kind has ``<kind>.txt`` and ``<kind>.html``; HTML is autoescaped (a resolution's
text is what people typed) and a variable a template names but the notice lacks is an error,
not an empty string.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ipmg_contracts.notifications import NotificationKind
from ipmg_notifications.domain import UNIT_NAMES, Notice, long_date


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    html: str


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("ipmg_notifications", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=StrictUndefined,
        # Templates ship with the package and never change while it runs: no freshness check
        # (a stat per template per message) for every one of a meeting's invitations.
        auto_reload=False,
    )
    env.filters["long_date"] = long_date
    return env


def template_names(kind: NotificationKind) -> tuple[str, str]:
    return f"{kind.value}.txt", f"{kind.value}.html"


def render(notice: Notice, person: str | None) -> RenderedMessage:
    """The message ``notice`` sends to ``person`` (None: to the unit, e.g. its webhook)."""
    env = environment()
    variables = {
        **notice.context,
        "subject": notice.subject,
        "unit_name": UNIT_NAMES[notice.unit],
        "person": person,
    }
    text_name, html_name = template_names(notice.kind)
    return RenderedMessage(
        subject=notice.subject,
        text=env.get_template(text_name).render(variables),
        html=env.get_template(html_name).render(variables),
    )
