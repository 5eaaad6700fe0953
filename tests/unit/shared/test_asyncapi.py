"""The AsyncAPI document covers every event contract, and the published copy is current."""

from __future__ import annotations

import json
from pathlib import Path

from ipmg_shared.asyncapi import asyncapi_document
from ipmg_shared.checkpoints import SYSTEM_EVENTS
from ipmg_shared.cli import service_definitions

PUBLISHED = Path(__file__).resolve().parents[3] / "docs" / "asyncapi.json"


def current_document() -> dict[str, object]:
    registries = {
        definition.name: definition.registry.merge(SYSTEM_EVENTS)
        for definition in service_definitions().values()
        if definition.registry is not None
    }
    return asyncapi_document(registries)


def test_every_event_type_of_every_write_service_is_a_message() -> None:
    document = current_document()
    messages = document["components"]["messages"]  # type: ignore[index]
    for definition in service_definitions().values():
        if definition.registry is None:
            continue
        channel = document["channels"][definition.name]  # type: ignore[index]
        assert channel["address"] == f"ipmg.{definition.name}.events"
        for event_type in definition.registry.event_types:
            assert event_type in messages
            assert event_type in channel["messages"]


def test_the_published_document_is_current() -> None:
    assert json.loads(PUBLISHED.read_text()) == current_document(), (
        "docs/asyncapi.json is stale: regenerate it with `uv run ipmg asyncapi > "
        "docs/asyncapi.json`"
    )
