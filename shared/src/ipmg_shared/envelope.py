"""The event envelope: the same JSON in the store, on Kafka and in exported bundles."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from ipmg_shared.actors import Actor
from ipmg_shared.canonical import canonical_bytes, format_instant, sha256_hex
from ipmg_shared.events import DomainEvent, EventRegistry, JsonObject

# Kafka headers repeat these so routers need not parse the value.
HEADER_FIELDS = ("type", "schema_version", "event_id", "source")


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID
    type: str = Field(min_length=1, max_length=200)
    schema_version: int = Field(ge=1)
    source: str = Field(min_length=1, max_length=100)
    stream_id: str = Field(min_length=1, max_length=200)
    stream_version: int = Field(ge=1)
    position: int = Field(ge=1)
    occurred_at: datetime
    recorded_at: datetime
    actor: Actor
    correlation_id: UUID
    causation_id: UUID | None = None
    payload: JsonObject
    prev_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_serializer("occurred_at", "recorded_at")
    def _instant(self, value: datetime) -> str:
        return format_instant(value)

    def decode(self, registry: EventRegistry) -> DomainEvent:
        return registry.decode(self.type, self.schema_version, self.payload)

    def to_json(self) -> JsonObject:
        data: JsonObject = self.model_dump(mode="json")
        return data

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        return cls.model_validate_json(data)

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        return [
            ("type", self.type.encode()),
            ("schema_version", str(self.schema_version).encode()),
            ("event_id", str(self.event_id).encode()),
            ("source", self.source.encode()),
        ]

    def computed_hash(self) -> str:
        return hash_event_fields(self.to_json())

    @property
    def hash_is_valid(self) -> bool:
        return self.computed_hash() == self.hash


def hash_event_fields(fields: dict[str, Any]) -> str:
    """SHA-256 over the canonical encoding of every envelope field but ``hash``."""
    return sha256_hex(canonical_bytes({k: v for k, v in fields.items() if k != "hash"}))
