"""The AsyncAPI 3.0 document of the event topics, generated from the event contracts.

Each write source's topic carries the envelope of DESIGN.md §3 whose ``payload`` is one of the
source's event payloads; headers repeat type, schema version, event id and source.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ipmg_shared.envelope import Envelope
from ipmg_shared.events import EventRegistry, JsonObject
from ipmg_shared.settings import TopicNames

HEADERS_SCHEMA: JsonObject = {
    "type": "object",
    "required": ["type", "schema_version", "event_id", "source"],
    "properties": {
        "type": {"type": "string"},
        "schema_version": {"type": "string", "pattern": "^[0-9]+$"},
        "event_id": {"type": "string", "format": "uuid"},
        "source": {"type": "string"},
    },
}


def asyncapi_document(
    registries: Mapping[str, EventRegistry], topics: TopicNames | None = None
) -> JsonObject:
    names = topics or TopicNames()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Envelope": _envelope_schema()}
    for source, registry in sorted(registries.items()):
        channel_messages = {}
        for event_type, event_class in sorted(registry.event_types.items()):
            payload_schema = event_class.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            for name, definition in payload_schema.pop("$defs", {}).items():
                schemas[name] = definition
            schemas[event_type] = payload_schema
            messages[event_type] = {
                "name": event_type,
                "title": event_type,
                "summary": (event_class.__doc__ or event_type).strip().splitlines()[0],
                "contentType": "application/json",
                "headers": HEADERS_SCHEMA,
                "payload": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Envelope"},
                        {
                            "type": "object",
                            "properties": {
                                "type": {"const": event_type},
                                "schema_version": {"const": event_class.schema_version},
                                "source": {"const": source},
                                "payload": {"$ref": f"#/components/schemas/{event_type}"},
                            },
                        },
                    ]
                },
            }
            channel_messages[event_type] = {"$ref": f"#/components/messages/{event_type}"}
        channels[source] = {
            "address": names.events(source),
            "title": f"{source} events",
            "description": (
                f"Every event of the {source} service, in position order per partition, keyed "
                "by stream id; kept forever (retention.ms=-1)."
            ),
            "messages": channel_messages,
        }
        operations[f"publish{source.title()}Events"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{source}"},
            "summary": f"The {source} service's relay publishes what its event store recorded.",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "IPMG Liaison events",
            "version": "1.0.0",
            "description": "The facts of the IPMG cycle, as the services publish them on Kafka.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def _envelope_schema() -> JsonObject:
    schema = Envelope.model_json_schema()
    schema.pop("$defs", None)
    schema["properties"]["actor"] = {
        "type": "object",
        "required": ["subject", "unit", "role"],
        "properties": {
            "subject": {"type": "string"},
            "unit": {"type": "string"},
            "role": {"type": "string"},
        },
    }
    return schema
