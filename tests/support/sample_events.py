"""A tiny event vocabulary for testing the shared machinery without any service's domain."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from ipmg_shared.actors import Actor, Role, Unit
from ipmg_shared.events import DomainEvent, EventRegistry, JsonObject
from ipmg_shared.store import NewEvent


class NoteRecorded(DomainEvent):
    event_type: ClassVar[str] = "NoteRecorded"
    schema_version: ClassVar[int] = 2
    text: str
    unit: Unit = Unit.NCSW


def _note_v1_to_v2(payload: JsonObject) -> JsonObject:
    # Version 1 had no unit: every note then came from the secretariat.
    return {**payload, "unit": "ncsw"}


REGISTRY = EventRegistry([NoteRecorded])
REGISTRY.register_upcaster("NoteRecorded", 1, _note_v1_to_v2)

SECRETARIAT = Actor(subject="staff@ncsw.gov.pk", unit=Unit.NCSW, role=Role.SECRETARIAT)
AT = datetime(2015, 11, 26, 10, 0, tzinfo=UTC)


def notes(*texts: str) -> list[NewEvent]:
    return [NewEvent(NoteRecorded(text=text), occurred_at=AT) for text in texts]
