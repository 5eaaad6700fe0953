"""The authorization policy as a table: who may do what, and what personal data they see."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipmg_shared.actors import Actor, Role, Unit
from ipmg_shared.idempotency import principal_command_id
from ipmg_shared.policy import (
    PERSONAL_DATA,
    POLICY,
    WITHHELD,
    Action,
    Permission,
    Resource,
    allows,
    personal_data_unit,
    refusal,
    withhold_personal_data,
)

SECRETARIAT = Actor(subject="staff@ncsw.example.org", unit=Unit.NCSW, role=Role.SECRETARIAT)
PUNJAB = Actor(subject="focal@punjab.example.org", unit=Unit.PUNJAB, role=Role.FOCAL_PERSON)
AUDITOR = Actor(subject="auditor@ncsw.example.org", unit=Unit.NCSW, role=Role.AUDITOR)
SERVICE = Actor.service("notifications")
# The secretariat's role held outside NCSW is no secretariat.
STRAY = Actor(subject="staff@punjab.example.org", unit=Unit.PUNJAB, role=Role.SECRETARIAT)

WRITES = [
    Permission(resource, action)
    for resource, action in {(g.resource, g.action) for g in POLICY if g.action is not Action.READ}
]
READS = [
    Permission(resource, Action.READ) for resource in Resource if resource != Resource.OPERATIONS
]


@pytest.mark.parametrize("permission", WRITES, ids=str)
def test_only_the_secretariat_and_focal_persons_write(permission: Permission) -> None:
    assert allows(SECRETARIAT, permission, Unit.SINDH)
    assert not allows(AUDITOR, permission)
    assert not allows(SERVICE, permission)
    assert not allows(STRAY, permission)
    focal_actions = {Action.GIVE_FEEDBACK, Action.REPORT_PROGRESS}
    assert allows(PUNJAB, permission) is (permission.action in focal_actions)
    assert not allows(PUNJAB, permission, Unit.SINDH)


@pytest.mark.parametrize("permission", READS, ids=str)
def test_reads(permission: Permission) -> None:
    for reader in (SECRETARIAT, AUDITOR, SERVICE):
        assert allows(reader, permission, Unit.SINDH)
        assert personal_data_unit(reader, permission) is None
    assert not allows(STRAY, permission)
    history = permission.resource is Resource.HISTORY
    assert allows(PUNJAB, permission) is not history
    assert not allows(PUNJAB, permission, Unit.SINDH)
    assert allows(PUNJAB, permission, Unit.PUNJAB) is not history
    assert personal_data_unit(PUNJAB, permission) is Unit.PUNJAB


def test_operations_are_open_to_every_principal() -> None:
    operations = Permission(Resource.OPERATIONS, Action.READ)
    for actor in (SECRETARIAT, PUNJAB, AUDITOR, SERVICE, STRAY):
        assert allows(actor, operations, Unit.SINDH)


def test_a_refusal_names_its_rule_and_says_why() -> None:
    schedule = refusal(PUNJAB, Permission(Resource.MEETING, Action.SCHEDULE))
    assert schedule is not None
    assert schedule.rule == "meeting.auth.secretariat_only"
    assert schedule.reason == "a focal_person of punjab may not schedule a meeting"
    elsewhere = refusal(PUNJAB, Permission(Resource.NOTIFICATION, Action.READ), Unit.SINDH)
    assert elsewhere is not None
    assert elsewhere.rule == "notification.auth.own_unit_only"
    assert elsewhere.reason == "a focal_person of punjab acts for punjab only"
    feedback = refusal(AUDITOR, Permission(Resource.RESOLUTION, Action.GIVE_FEEDBACK))
    assert feedback is not None
    assert feedback.rule == "resolution.auth.focal_person_or_secretariat"
    history = refusal(PUNJAB, Permission(Resource.HISTORY, Action.READ))
    assert history is not None
    assert history.rule == "history.auth.read_not_granted"
    assert refusal(AUDITOR, Permission(Resource.REPORT, Action.READ)) is None


def test_other_units_personal_data_is_withheld() -> None:
    state = {
        "title": "Report on CEDAW",
        "attendees": [
            {"name": "Minister", "role": "minister", "unit": "punjab"},
            {"name": "Secretary", "role": "secretary", "unit": "sindh"},
        ],
        "positions": {"punjab": {"person": "A"}, "sindh": {"person": "B"}},
        "actor": {"subject": "x@ncsw.example.org", "unit": "ncsw", "role": "secretariat"},
        "person": "nobody's",
    }
    shown = withhold_personal_data(state, Unit.PUNJAB)
    assert shown["title"] == "Report on CEDAW"
    assert [a["name"] for a in shown["attendees"]] == ["Minister", WITHHELD]
    assert [a["role"] for a in shown["attendees"]] == ["minister", "secretary"]
    assert shown["positions"] == {"punjab": {"person": "A"}, "sindh": {"person": WITHHELD}}
    assert shown["actor"]["subject"] == WITHHELD
    assert shown["person"] == WITHHELD  # no unit beside it: withheld
    assert withhold_personal_data(state, None) == state


def test_an_idempotency_key_belongs_to_its_principal() -> None:
    request = {"path": "/meetings", "body": {"venue": "Lahore"}}
    first = principal_command_id(SECRETARIAT, "/meetings", "key-1", request)
    assert first == principal_command_id(SECRETARIAT, "/meetings", "key-1", request)
    assert first.client_key == "key-1"
    others = [
        principal_command_id(PUNJAB, "/meetings", "key-1", request),
        principal_command_id(STRAY, "/meetings", "key-1", request),
        principal_command_id(
            SECRETARIAT.model_copy(update={"subject": "b"}), "/meetings", "key-1", request
        ),
        principal_command_id(SECRETARIAT, "/meetings/x/held", "key-1", request),
    ]
    assert len({other.key for other in others} | {first.key}) == 5
    assert {other.fingerprint for other in others} == {first.fingerprint}


def policy_table() -> str:
    """The policy as people read it: one row per resource and action, one column per role."""
    roles = [Role.SECRETARIAT, Role.FOCAL_PERSON, Role.AUDITOR, Role.SERVICE]
    columns = ["resource", "action", "secretariat (ncsw)", "focal person", "auditor", "service"]
    lines = ["| " + " | ".join([*columns, "personal data"]) + " |", "|---" * 7 + "|"]
    pairs = dict.fromkeys((grant.resource, grant.action) for grant in POLICY)
    for resource, action in pairs:
        cells = []
        for role in roles:
            grant = next(
                (g for g in POLICY if (g.role, g.resource, g.action) == (role, resource, action)),
                None,
            )
            cells.append("—" if grant is None else grant.reach.value)
        personal = PERSONAL_DATA.get(resource, "") if action is Action.READ else ""
        lines.append(f"| {resource.value} | {action.value} | {' | '.join(cells)} | {personal} |")
    return "\n".join(lines)


def test_the_security_guide_shows_the_policy_as_it_is() -> None:
    guide = (Path(__file__).parents[3] / "docs" / "security.md").read_text()
    assert policy_table() in guide
