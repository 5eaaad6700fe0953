"""The contract check: a published event contract may grow, never break without a new version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, ClassVar
from uuid import UUID

import pytest
from hypothesis import given, settings
from pydantic import StringConstraints

from ipmg_shared.contracts_cli import every_registry
from ipmg_shared.events import DomainEvent, EventRegistry, JsonObject
from ipmg_shared.published_contracts import (
    BreakingChange,
    contract_problems,
    publish,
    published_contracts,
)
from ipmg_shared.schema_compat import breaking_changes
from tests.support.contract_strategies import from_schema

PUBLISHED = Path(__file__).resolve().parents[3] / "contracts" / "published"
Reason = Annotated[str, StringConstraints(min_length=1, max_length=2_000)]


class Cancelled(DomainEvent):
    event_type: ClassVar[str] = "MeetingCancelled"
    meeting_id: UUID
    reason: Reason


def test_the_code_keeps_every_published_contract() -> None:
    assert contract_problems(PUBLISHED, every_registry()) == []


def test_every_older_published_version_upcasts_to_the_current_one() -> None:
    registries = every_registry()
    for published in published_contracts(PUBLISHED):
        registry = registries[published.source]
        current = registry.event_types[published.event_type]
        if published.version < current.schema_version:
            assert_upcasts(registry, published.event_type, published.version, published.schema())


def assert_upcasts(registry: EventRegistry, event_type: str, version: int, schema: Any) -> None:
    """Payloads of the published old version decode, upcast, as the current version."""

    @settings(max_examples=50, deadline=None)
    @given(from_schema(schema))
    def decodes(payload: JsonObject) -> None:
        registry.decode(event_type, version, payload)

    decodes()


def published_folder(tmp_path: Path, *event_classes: type[DomainEvent]) -> Path:
    folder = tmp_path / "published"
    publish(folder, {"meetings": EventRegistry(event_classes)})
    return folder


def problems_after(tmp_path: Path, change: type[DomainEvent]) -> list[str]:
    folder = published_folder(tmp_path, Cancelled)
    return contract_problems(folder, {"meetings": EventRegistry([change])})


def test_adding_an_optional_field_passes(tmp_path: Path) -> None:
    class Grown(DomainEvent):
        event_type: ClassVar[str] = "MeetingCancelled"
        meeting_id: UUID
        reason: Reason
        announced_by: str | None = None

    assert problems_after(tmp_path, Grown) == []


def test_removing_a_field_fails(tmp_path: Path) -> None:
    class Shrunk(DomainEvent):
        event_type: ClassVar[str] = "MeetingCancelled"
        meeting_id: UUID

    assert problems_after(tmp_path, Shrunk) == [
        "meetings/MeetingCancelled v1: reason: removed "
        "(a new schema_version and an upcaster are needed)"
    ]


def test_retyping_tightening_or_requiring_a_field_fails(tmp_path: Path) -> None:
    class Retyped(DomainEvent):
        event_type: ClassVar[str] = "MeetingCancelled"
        meeting_id: UUID
        reason: int
        announced_by: str

    class Tightened(DomainEvent):
        event_type: ClassVar[str] = "MeetingCancelled"
        meeting_id: UUID
        reason: Annotated[str, StringConstraints(min_length=1, max_length=200)]

    retyped = problems_after(tmp_path / "retyped", Retyped)
    assert [p.split(": ", 1)[1].split(" (")[0] for p in retyped] == [
        "reason: type string became integer",
        "announced_by: now required",
    ]
    tightened = problems_after(tmp_path / "tightened", Tightened)
    assert "reason: maxLength lowered to 200" in tightened[0]


def test_renaming_an_event_fails(tmp_path: Path) -> None:
    class Renamed(DomainEvent):
        event_type: ClassVar[str] = "MeetingCalledOff"
        meeting_id: UUID
        reason: Reason

    assert "meetings/MeetingCancelled v1: published, but no longer an event of meetings" in (
        problems_after(tmp_path, Renamed)
    )


def test_a_new_version_with_its_upcaster_passes(tmp_path: Path) -> None:
    class CancelledV2(DomainEvent):
        event_type: ClassVar[str] = "MeetingCancelled"
        schema_version: ClassVar[int] = 2
        meeting_id: UUID
        reasons: tuple[Reason, ...]

    folder = published_folder(tmp_path, Cancelled)
    registry = EventRegistry([CancelledV2])
    assert contract_problems(folder, {"meetings": registry}) == [
        "meetings/MeetingCancelled v1: no upcaster chain to v2",
        "meetings/MeetingCancelled v2: not published yet (ipmg contracts publish)",
    ]
    with pytest.raises(BreakingChange):
        publish(folder, {"meetings": registry})

    def to_v2(payload: JsonObject) -> JsonObject:
        return {"meeting_id": payload["meeting_id"], "reasons": [payload["reason"]]}

    registry.register_upcaster("MeetingCancelled", 1, to_v2)
    publish(folder, {"meetings": registry})
    assert contract_problems(folder, {"meetings": registry}) == []
    assert sorted(path.name for path in (folder / "meetings").iterdir()) == [
        "MeetingCancelled.v1.json",
        "MeetingCancelled.v2.json",
    ]
    v1 = json.loads((folder / "meetings" / "MeetingCancelled.v1.json").read_text())
    assert_upcasts(registry, "MeetingCancelled", 1, v1)


def test_a_loosened_bound_or_a_new_enum_member_is_compatible() -> None:
    old = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 10}}}
    new = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 99}}}
    assert breaking_changes(old, new) == []
    assert breaking_changes({"enum": ["a"]}, {"enum": ["a", "b"]}) == []
    assert breaking_changes({"enum": ["a", "b"]}, {"enum": ["a"]}) == [
        "the payload: no longer accepts ['b']"
    ]
    assert breaking_changes({"type": "string"}, {"type": "string", "pattern": "^x$"}) == [
        "the payload: pattern None became '^x$'"
    ]
