"""Notices into readable messages: plain text and HTML from the package's Jinja2 templates.

Each kind has ``<kind>.txt`` and ``<kind>.html``, the body of its message, which is the same
for everyone the notice goes to; ``base.txt`` and ``base.html`` put the greeting of each
person and the footer around it. So a notice renders its body and its frame once, not once
per member: each member's copy differs only by the name in the greeting. And notices that
differ only by their unit (a meeting's invitation to each of the eight) are rendered once
for all of them, with the unit's name put in its place afterwards.
HTML is autoescaped (a resolution's text is what people typed) and a variable a template
names but the notice lacks is an error, not an empty string.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
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


Addressed = Callable[[str | None], RenderedMessage]


def messages_of(notice: Notice) -> Addressed:
    """The notice's body rendered once; the function returned addresses it to each person."""
    env = environment()
    variables, text_body, html_body = _bodies(notice, UNIT_NAMES[notice.unit])
    text = _addressed(env.get_template("base.txt"), variables, text_body, escape=str)
    html = _addressed(env.get_template("base.html"), variables, html_body, escape=_escaped)

    def addressed_to(person: str | None) -> RenderedMessage:
        return RenderedMessage(subject=notice.subject, text=text(person), html=html(person))

    return addressed_to


def _bodies(notice: Notice, unit_name: str) -> tuple[dict[str, Any], str, object]:
    """The templates' variables and the notice's body: as text, and as HTML."""
    env = environment()
    variables = {**notice.context, "subject": notice.subject, "unit_name": unit_name}
    text_name, html_name = template_names(notice.kind)
    text_body = env.get_template(text_name).render(variables)
    # A template module, rendered with autoescape: Jinja places it in the page as markup.
    html_body = env.get_template(html_name).make_module(variables)
    return variables, text_body, html_body


# Stand for the person and the unit while a message is framed; they cannot occur in a message,
# as PostgreSQL stores no NUL character, and they pass HTML escaping unchanged.
_PERSON = "\x00person\x00"
_UNIT = "\x00unit\x00"
_MARKER_START = "\x00"


def messages_for(notices: Iterable[Notice]) -> Iterator[tuple[Notice, Addressed]]:
    """Each notice with its messages, as ``messages_of`` gives them.

    A run of notices of one kind, subject and context, which differ only by their unit, is
    rendered once with a marker for the unit's name: a meeting's invitation is the same to
    each of the eight units but for that name, and rendering it eight times was most of the
    work of planning it. A unit whose copy still holds a marker (a template that changes the
    name rather than showing it) is rendered whole instead.
    """
    shared: _UnitShared | None = None
    for notice in notices:
        if shared is None or not shared.renders(notice):
            shared = _UnitShared.of(notice)
        yield notice, shared.addressed(notice) or messages_of(notice)


@dataclass(frozen=True)
class _UnitShared:
    """A notice rendered with markers for the unit's name and the person's."""

    kind: NotificationKind
    subject: str
    context: Mapping[str, Any]
    text: tuple[str, ...]  # to a person: the text split where the name goes
    text_to_unit: str
    html: tuple[str, ...]
    html_to_unit: str

    @classmethod
    def of(cls, notice: Notice) -> _UnitShared:
        env = environment()
        variables, text_body, html_body = _bodies(notice, _UNIT)
        text_base, html_base = env.get_template("base.txt"), env.get_template("base.html")
        return cls(
            notice.kind,
            notice.subject,
            notice.context,
            tuple(text_base.render(variables, person=_PERSON, body=text_body).split(_PERSON)),
            text_base.render(variables, person=None, body=text_body),
            tuple(html_base.render(variables, person=_PERSON, body=html_body).split(_PERSON)),
            html_base.render(variables, person=None, body=html_body),
        )

    def renders(self, notice: Notice) -> bool:
        return (self.kind, self.subject, self.context) == (
            notice.kind,
            notice.subject,
            notice.context,
        )

    def addressed(self, notice: Notice) -> Addressed | None:
        """The notice's messages with its unit's name in place; None if that is not enough."""
        if len(self.text) != 2 or len(self.html) != 2:
            return None
        name = UNIT_NAMES[notice.unit]
        html_name = _escaped(name)
        text_before, text_after = (part.replace(_UNIT, name) for part in self.text)
        html_before, html_after = (part.replace(_UNIT, html_name) for part in self.html)
        text_to_unit = self.text_to_unit.replace(_UNIT, name)
        html_to_unit = self.html_to_unit.replace(_UNIT, html_name)
        copies = (text_before, text_after, html_before, html_after, text_to_unit, html_to_unit)
        if any(_MARKER_START in copy for copy in copies):
            return None
        subject = notice.subject

        def addressed_to(person: str | None) -> RenderedMessage:
            if not person:
                return RenderedMessage(subject, text_to_unit, html_to_unit)
            return RenderedMessage(
                subject,
                text_before + person + text_after,
                html_before + _escaped(person) + html_after,
            )

        return addressed_to


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
