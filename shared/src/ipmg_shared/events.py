"""Domain events as frozen pydantic payloads, registered by (type, schema_version).

The envelope (see ``envelope.py``) carries the metadata; a payload class carries only the
event's own fields. Old schema versions are turned into the current one by upcasters on read,
so stored history is never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

JsonObject = dict[str, Any]
Upcaster = Callable[[JsonObject], JsonObject]


class DomainEvent(BaseModel):
    """Base of every event payload. Subclasses set ``event_type`` (past tense)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


class EventDecodingError(Exception):
    """A stored or received event cannot be turned into a payload."""


class UnknownEventType(EventDecodingError):
    def __init__(self, event_type: str, schema_version: int) -> None:
        super().__init__(f"unknown event type {event_type!r} (schema version {schema_version})")
        self.event_type = event_type
        self.schema_version = schema_version


class InvalidEventPayload(EventDecodingError):
    def __init__(self, event_type: str, error: ValidationError) -> None:
        super().__init__(f"payload of {event_type!r} does not match its schema: {error}")
        self.event_type = event_type


class EventRegistry:
    """Maps (type, schema_version) to payload classes and chains upcasters to the current one."""

    def __init__(self, event_classes: Iterable[type[DomainEvent]] = ()) -> None:
        self._current: dict[str, type[DomainEvent]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        for event_class in event_classes:
            self.register(event_class)

    def register(self, event_class: type[DomainEvent]) -> type[DomainEvent]:
        existing = self._current.get(event_class.event_type)
        if existing is not None and existing is not event_class:
            raise ValueError(f"event type {event_class.event_type!r} registered twice")
        self._current[event_class.event_type] = event_class
        return event_class

    def register_upcaster(self, event_type: str, from_version: int, upcaster: Upcaster) -> None:
        """``upcaster`` turns a version ``from_version`` payload into version ``from_version+1``."""
        self._upcasters[(event_type, from_version)] = upcaster

    def merge(self, other: EventRegistry) -> EventRegistry:
        merged = EventRegistry([*self._current.values(), *other._current.values()])
        merged._upcasters = {**self._upcasters, **other._upcasters}
        return merged

    def upcasts(self, event_type: str, from_version: int) -> bool:
        """Whether a version ``from_version`` payload can be upcast to the current version."""
        event_class = self._current.get(event_type)
        if event_class is None:
            return False
        return all(
            (event_type, version) in self._upcasters
            for version in range(from_version, event_class.schema_version)
        )

    def knows(self, event_type: str) -> bool:
        return event_type in self._current

    @property
    def event_types(self) -> Mapping[str, type[DomainEvent]]:
        return dict(self._current)

    def decode(self, event_type: str, schema_version: int, payload: JsonObject) -> DomainEvent:
        event_class = self._current.get(event_type)
        if event_class is None or not 1 <= schema_version <= event_class.schema_version:
            raise UnknownEventType(event_type, schema_version)
        version = schema_version
        while version < event_class.schema_version:
            upcaster = self._upcasters.get((event_type, version))
            if upcaster is None:
                raise UnknownEventType(event_type, schema_version)
            payload = upcaster(payload)
            version += 1
        try:
            return event_class.model_validate(payload)
        except ValidationError as error:
            raise InvalidEventPayload(event_type, error) from error
