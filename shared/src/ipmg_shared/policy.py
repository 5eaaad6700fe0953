"""The authorization policy of every service, for reads and writes: one table.

Each grant says that a role (held by someone of the given units) may take an action on a
resource, for any unit or for their own unit only. Nothing is allowed that no grant allows.
Resources that carry personal data (names, e-mail addresses) are marked; whoever reaches only
their own unit sees other units' personal data withheld. Pure: no I/O, no framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ipmg_shared.actors import Actor, Role, Unit


class Resource(StrEnum):
    MEETING = "meeting"
    RESOLUTION = "resolution"
    HISTORY = "history"  # an aggregate's stored events, as recorded
    REPORT = "report"  # reporting's reports, exports and timelines
    DASHBOARD = "dashboard"
    NOTIFICATION = "notification"  # what was sent to whom
    OPERATIONS = "operations"  # health, metrics, API documents: no token needed


class Action(StrEnum):
    READ = "read"
    SCHEDULE = "schedule"
    RESCHEDULE = "reschedule"
    CANCEL = "cancel"
    HOLD = "hold"
    PUBLISH_MINUTES = "publish-minutes"
    PASS = "pass"  # noqa: S105 (to pass a resolution, not a password)
    CIRCULATE = "circulate"
    GIVE_FEEDBACK = "give-feedback"
    AMEND = "amend"
    APPROVE = "approve"
    SIGN = "sign"
    ADOPT_ACTION_PLAN = "adopt-action-plan"
    REPORT_PROGRESS = "report-progress"
    CLOSE = "close"


class Reach(StrEnum):
    ANY_UNIT = "any unit"
    OWN_UNIT = "own unit"


# What each resource holds that is personal data; the unit it belongs to rides beside it.
PERSONAL_DATA: dict[Resource, str] = {
    Resource.MEETING: "attendees' names",
    Resource.RESOLUTION: "names of who gave feedback and who signed",
    Resource.HISTORY: "everything above, and who did what (e-mail addresses)",
    Resource.REPORT: "names of who gave feedback and who signed; who did what",
    Resource.DASHBOARD: "names of who gave feedback; who did what",
    Resource.NOTIFICATION: "recipients' names, e-mail addresses and subjects",
}


# Records personal through and through: asking for another unit's is refused, not withheld.
REFUSED_FOR_OTHER_UNITS = frozenset({Resource.NOTIFICATION})


@dataclass(frozen=True)
class Permission:
    """What a route does, in the policy's terms."""

    resource: Resource
    action: Action

    def __str__(self) -> str:
        return f"{self.resource}:{self.action}"


@dataclass(frozen=True)
class Grant:
    role: Role
    resource: Resource
    action: Action
    reach: Reach
    units: frozenset[Unit] | None = None  # the actor's unit must be one of these; None: any


_M, _R, _H = Resource.MEETING, Resource.RESOLUTION, Resource.HISTORY
_ANY, _OWN, _NO = Reach.ANY_UNIT, Reach.OWN_UNIT, None
_COLUMNS = (Role.SECRETARIAT, Role.FOCAL_PERSON, Role.AUDITOR, Role.SERVICE)
# fmt: off
_Row = tuple[Resource, Action, Reach | None, Reach | None, Reach | None, Reach | None]
_TABLE: tuple[_Row, ...] = (
    # resource            action                    secretariat focal  auditor service
    (_M,                   Action.SCHEDULE,          _ANY,       _NO,   _NO,    _NO),
    (_M,                   Action.RESCHEDULE,        _ANY,       _NO,   _NO,    _NO),
    (_M,                   Action.CANCEL,            _ANY,       _NO,   _NO,    _NO),
    (_M,                   Action.HOLD,              _ANY,       _NO,   _NO,    _NO),
    (_M,                   Action.PUBLISH_MINUTES,   _ANY,       _NO,   _NO,    _NO),
    (_R,                   Action.PASS,              _ANY,       _NO,   _NO,    _NO),
    (_R,                   Action.CIRCULATE,         _ANY,       _NO,   _NO,    _NO),
    (_R,                   Action.GIVE_FEEDBACK,     _ANY,       _OWN,  _NO,    _NO),
    (_R,                   Action.AMEND,             _ANY,       _NO,   _NO,    _NO),
    (_R,                   Action.APPROVE,           _ANY,       _NO,   _NO,    _NO),
    (_R,                   Action.SIGN,              _ANY,       _NO,   _NO,    _NO),
    (_R,                   Action.ADOPT_ACTION_PLAN, _ANY,       _NO,   _NO,    _NO),
    (_R,                   Action.REPORT_PROGRESS,   _ANY,       _OWN,  _NO,    _NO),
    (_R,                   Action.CLOSE,             _ANY,       _NO,   _NO,    _NO),
    (_M,                   Action.READ,              _ANY,       _OWN,  _ANY,   _ANY),
    (_R,                   Action.READ,              _ANY,       _OWN,  _ANY,   _ANY),
    (_H,                   Action.READ,              _ANY,       _NO,   _ANY,   _ANY),
    (Resource.REPORT,      Action.READ,              _ANY,       _OWN,  _ANY,   _ANY),
    (Resource.DASHBOARD,   Action.READ,              _ANY,       _OWN,  _ANY,   _ANY),
    (Resource.NOTIFICATION, Action.READ,             _ANY,       _OWN,  _ANY,   _ANY),
    # Operations routes need no token: anyone, with or without one, may read them.
    (Resource.OPERATIONS,  Action.READ,              _ANY,       _ANY,  _ANY,   _ANY),
)
# fmt: on
_NCSW = frozenset({Unit.NCSW})  # the secretariat role counts only when held in NCSW


def _units(role: Role, resource: Resource) -> frozenset[Unit] | None:
    """The units whose members hold ``role`` for ``resource`` (None: any unit)."""
    if role is Role.SECRETARIAT and resource is not Resource.OPERATIONS:
        return _NCSW
    return None


POLICY: tuple[Grant, ...] = tuple(
    Grant(role, resource, action, reach, _units(role, resource))
    for resource, action, *reaches in _TABLE
    for role, reach in zip(_COLUMNS, reaches, strict=True)
    if reach is not None
)
"""The whole policy, one grant per filled cell of the table. A focal person's own-unit reads
still show other units' records, with their personal data withheld; asking for another
unit's deliveries is refused."""


def grant_for(actor: Actor, permission: Permission) -> Grant | None:
    """The grant that lets ``actor`` do ``permission``, if any."""
    for grant in POLICY:
        if (
            grant.role is actor.role
            and grant.resource is permission.resource
            and grant.action is permission.action
            and (grant.units is None or actor.unit in grant.units)
        ):
            return grant
    return None


def allows(actor: Actor, permission: Permission, unit: Unit | None = None) -> bool:
    """Whether ``actor`` may do ``permission``; ``unit``: the unit the request acts for, or
    whose personal data it asks for (None: none in particular)."""
    grant = grant_for(actor, permission)
    if grant is None:
        return False
    return grant.reach is Reach.ANY_UNIT or unit is None or unit is actor.unit


@dataclass(frozen=True)
class Refusal:
    rule: str  # stable, e.g. ``meeting.auth.secretariat_only``
    reason: str


def refusal(actor: Actor, permission: Permission, unit: Unit | None = None) -> Refusal | None:
    """Why ``actor`` may not do ``permission`` (None: allowed)."""
    if allows(actor, permission, unit):
        return None
    resource, action = permission.resource.value, permission.action.value
    if grant_for(actor, permission) is not None:
        return Refusal(
            f"{resource}.auth.own_unit_only",
            f"a {actor.role.value} of {actor.unit.value} acts for {actor.unit.value} only",
        )
    holders = {
        g.role
        for g in POLICY
        if g.resource is permission.resource and g.action is permission.action
    }
    what = f"{resource} records" if permission.action is Action.READ else f"a {resource}"
    named = {
        frozenset({Role.SECRETARIAT}): "secretariat_only",
        frozenset({Role.SECRETARIAT, Role.FOCAL_PERSON}): "focal_person_or_secretariat",
    }
    return Refusal(
        f"{resource}.auth.{named.get(frozenset(holders), f'{action}_not_granted')}",
        f"a {actor.role.value} of {actor.unit.value} may not {action} {what}",
    )


def personal_data_unit(actor: Actor, permission: Permission) -> Unit | None:
    """The one unit whose personal data ``actor`` may see through ``permission``; None: all."""
    grant = grant_for(actor, permission)
    if grant is not None and grant.reach is Reach.ANY_UNIT:
        return None
    return actor.unit


WITHHELD = "(withheld)"
PERSONAL_FIELDS = frozenset({"person", "name", "subject", "address", "email"})
_UNITS = frozenset(unit.value for unit in Unit)


def withhold_personal_data(data: Any, own_unit: Unit | None) -> Any:
    """``data`` (JSON) with the personal fields of units other than ``own_unit`` withheld.

    A field belongs to the unit named beside it (``unit``) or by the key it sits under (a map
    by unit); a personal field of no known unit is withheld too. ``own_unit`` None: all shown.
    """
    if own_unit is None:
        return data
    return _withhold(data, own_unit.value, None)


def _withhold(data: Any, own: str, context: str | None) -> Any:
    if isinstance(data, list | tuple):
        return [_withhold(item, own, context) for item in data]
    if not isinstance(data, dict):
        return data
    named = data.get("unit")
    unit = named if isinstance(named, str) and named in _UNITS else context
    shown: dict[str, Any] = {}
    for key, value in data.items():
        if key in PERSONAL_FIELDS and isinstance(value, str) and unit != own:
            shown[key] = WITHHELD
        else:
            shown[key] = _withhold(value, own, key if key in _UNITS else unit)
    return shown
