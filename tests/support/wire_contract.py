"""Kafka records checked against the AsyncAPI document with a JSON Schema validator."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema_rs

from ipmg_shared.events import JsonObject


@dataclass(frozen=True)
class WireRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


class WireContract:
    """Which messages of its channel a record matches: payload, headers and key."""

    def __init__(self, document: JsonObject) -> None:
        self.components = document["components"]
        self.channels = {channel["address"]: channel for channel in document["channels"].values()}
        self._validators: dict[str, Any] = {}

    def matches(self, record: WireRecord) -> list[str]:
        channel = self.channels.get(record.topic)
        if channel is None:
            return []
        value = json.loads(record.value)
        headers = {name: raw.decode() for name, raw in record.headers}
        key = None if record.key is None else record.key.decode()
        found = []
        for reference in channel["messages"].values():
            message = reference["$ref"]
            if (
                self._valid(f"{message}/payload", value)
                and self._valid(f"{message}/headers", headers)
                and self._valid(f"{message}/bindings/kafka/key", key)
            ):
                found.append(message.rsplit("/", 1)[-1])
        return found

    def _valid(self, pointer: str, instance: object) -> bool:
        validator = self._validators.get(pointer)
        if validator is None:
            schema = {"$ref": pointer, "components": self.components}
            validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
            self._validators[pointer] = validator
        return bool(validator.is_valid(instance))
