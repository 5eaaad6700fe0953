"""Notices into readable messages: plain text and HTML from the package's Jinja2 templates.

Each kind has ``<kind>.txt`` and ``<kind>.html``, the body of its message, which is the same
for everyone the notice goes to; ``base.txt`` and ``base.html`` put the greeting of each
person and the footer around it. So a meeting's invitation renders its body and its frame
once per unit, not once per member: each member's copy differs only by the name in the
greeting. HTML is autoescaped (a resolution's text is what people typed) and a
variable a template names but the notice lacks is an error, not an empty string.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, Template, select_autoescape
from markupsafe import escape as escape_html

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
    return messages_of(notice)(person)


def messages_of(notice: Notice) -> Callable[[str | None], RenderedMessage]:
    """The notice's body rendered once; the function returned addresses it to each person."""
    env = environment()
    variables = {**notice.context, "subject": notice.subject, "unit_name": UNIT_NAMES[notice.unit]}
    text_name, html_name = template_names(notice.kind)
    text_body = env.get_template(text_name).render(variables)
    # A template module, rendered with autoescape: Jinja places it in the page as markup.
    html_body = env.get_template(html_name).make_module(variables)
    text = _addressed(env.get_template("base.txt"), variables, text_body, escape=str)
    html = _addressed(env.get_template("base.html"), variables, html_body, escape=_escaped)

    def addressed_to(person: str | None) -> RenderedMessage:
        return RenderedMessage(subject=notice.subject, text=text(person), html=html(person))

    return addressed_to


# Stands for the person while a message is framed; it cannot occur in a message, as PostgreSQL
# stores no NUL character, and it passes HTML escaping unchanged.
_PERSON = "\x00person\x00"


def _addressed(
    base: Template, variables: dict[str, Any], body: object, escape: Callable[[str], str]
) -> Callable[[str | None], str]:
    """``base`` around ``body``, framed once: each person's copy puts the name in its place.

    Rendering the frame once per person is most of the work of a meeting's invitations, and
    only the greeting changes. A frame that does not name the person exactly once is
    rendered for each person instead.
    """
    framed = base.render(variables, person=_PERSON, body=body).split(_PERSON)

    def to(person: str | None) -> str:
        if not person or len(framed) != 2:
            return base.render(variables, person=person, body=body)
        before, after = framed
        return before + escape(person) + after

    return to


def _escaped(text: str) -> str:
    return str(escape_html(text))  # what autoescape does to ``{{ person }}``
