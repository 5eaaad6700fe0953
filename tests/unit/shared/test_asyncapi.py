"""The AsyncAPI document covers every event contract, and the published copy is current."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ipmg_shared.asyncapi import asyncapi_document
from ipmg_shared.checkpoints import SYSTEM_EVENTS
from ipmg_shared.cli import service_definitions

PUBLISHED = Path(__file__).resolve().parents[3] / "docs" / "asyncapi.json"


def current_document() -> dict[str, Any]:
    registries = {
        definition.name: definition.registry.merge(SYSTEM_EVENTS)
        for definition in service_definitions().values()
        if definition.registry is not None
    }
    return asyncapi_document(registries)


def test_every_event_type_of_every_write_service_is_a_message() -> None:
    document = current_document()
    messages = document["components"]["messages"]
    for definition in service_definitions().values():
        if definition.registry is None:
            continue
        channel = document["channels"][definition.name]
        assert channel["address"] == f"ipmg.{definition.name}.events"
        for event_type in definition.registry.event_types:
            assert event_type in messages
            assert event_type in channel["messages"]


def test_the_published_document_is_current() -> None:
    assert json.loads(PUBLISHED.read_text()) == current_document(), (
        "docs/asyncapi.json is stale: regenerate it with `uv run ipmg asyncapi > "
        "docs/asyncapi.json`"
    )


def test_a_checkpoint_is_a_message_of_each_source_that_signs_it() -> None:
    document = current_document()
    messages = document["components"]["messages"]
    for source in ("meetings", "resolutions", "notifications"):
        name = f"ChainCheckpointSigned.{source}"
        assert name in document["channels"][source]["messages"]
        envelope = messages[name]["payload"]["allOf"][1]["properties"]
        assert envelope["source"] == {"const": source}
        assert envelope["payload"]["allOf"][1]["properties"]["source"] == {"const": source}


def test_dead_letter_and_retry_topics_are_documented_with_their_headers() -> None:
    document = current_document()
    channels = document["channels"]
    assert channels["deadLetter"]["address"] == "ipmg.dead-letter"
    dead_letter = document["components"]["messages"]["DeadLetter"]
    assert {
        "x-ipmg-consumer",
        "x-ipmg-reason",
        "x-ipmg-error",
        "x-ipmg-original-topic",
        "x-ipmg-original-partition",
        "x-ipmg-original-offset",
    } <= set(dead_letter["headers"]["required"])
    for consumer in ("meetings", "resolutions", "notifications", "reporting"):
        assert channels[f"retry{consumer.title()}"]["address"] == f"ipmg.retry.{consumer}"
    assert document["servers"]["kafka"]["protocol"] == "kafka"
    assert channels["meetings"]["bindings"]["kafka"]["partitions"] == 1
