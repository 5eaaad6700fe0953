"""The AsyncAPI 3.0 document of every topic the system writes, generated from the event contracts.

Each write source's topic carries the envelope of DESIGN.md §3 whose ``payload`` is one of the
source's event payloads; headers repeat type, schema version, event id and source. An event type
several sources publish (a signed checkpoint) gets one message per source, since the envelope's
``source`` differs. The dead-letter topic and each consumer's retry topic carry original records
with headers that say where they came from and why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ipmg_shared.envelope import Envelope
from ipmg_shared.events import DomainEvent, EventRegistry, JsonObject
from ipmg_shared.settings import SERVICES, TopicNames

BINDING_VERSION = "0.5.0"
STRING: JsonObject = {"type": "string"}

EVENT_HEADERS: JsonObject = {
    "type": "object",
    "required": ["type", "schema_version", "event_id", "source"],
    "properties": {
        "type": {"type": "string", "description": "The envelope's type."},
        "schema_version": {"type": "string", "pattern": "^[0-9]+$"},
        "event_id": {"type": "string", "format": "uuid"},
        "source": {"type": "string", "description": "The producing service."},
    },
}

DEAD_LETTER_HEADERS: JsonObject = {
    "type": "object",
    "description": "The original record's headers, plus where it came from and why it failed.",
    "required": [
        "x-ipmg-consumer",
        "x-ipmg-reason",
        "x-ipmg-error",
        "x-ipmg-original-topic",
        "x-ipmg-original-partition",
        "x-ipmg-original-offset",
    ],
    "properties": {
        **EVENT_HEADERS["properties"],
        "x-ipmg-consumer": {"type": "string", "description": "The consumer that gave up."},
        "x-ipmg-reason": {
            "type": "string",
            "description": "Why, in one word (e.g. invalid_envelope, unknown_type, stream_gap).",
        },
        "x-ipmg-error": {"type": "string", "maxLength": 2000, "description": "The error."},
        "x-ipmg-original-topic": STRING,
        "x-ipmg-original-partition": {"type": "string", "pattern": "^[0-9]+$"},
        "x-ipmg-original-offset": {"type": "string", "pattern": "^[0-9]+$"},
    },
}

RETRY_HEADERS: JsonObject = {
    "type": "object",
    "description": "The original record's headers, plus the dead letter it was replayed from.",
    "required": ["x-ipmg-replayed-from"],
    "properties": {
        **EVENT_HEADERS["properties"],
        "x-ipmg-replayed-from": {
            "type": "string",
            "pattern": "^[0-9]+:[0-9]+$",
            "description": "partition:offset of the record on the dead-letter topic.",
        },
    },
}

STREAM_KEY: JsonObject = {"type": "string", "description": "The event's stream id."}


def asyncapi_document(
    registries: Mapping[str, EventRegistry],
    topics: TopicNames | None = None,
    *,
    bootstrap_servers: str = "127.0.0.1:9092",
    partitions: int = 1,
    replicas: int = 1,
    consumers: Sequence[str] = SERVICES,
) -> JsonObject:
    names = topics or TopicNames()
    shared_types = Counter(t for registry in registries.values() for t in registry.event_types)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Envelope": _envelope_schema()}
    topic = _TopicBinding(partitions, replicas)
    for source, registry in sorted(registries.items()):
        channel_messages = {}
        for event_type, event_class in sorted(registry.event_types.items()):
            schemas.update(_payload_schemas(event_type, event_class))
            name = f"{event_type}.{source}" if shared_types[event_type] > 1 else event_type
            messages[name] = _event_message(name, source, event_type, event_class)
            channel_messages[name] = {"$ref": f"#/components/messages/{name}"}
        channels[source] = {
            "address": names.events(source),
            "title": f"{source} events",
            "description": (
                f"Every event of the {source} service, in position order per partition, keyed "
                "by stream id; kept forever (retention.ms=-1)."
            ),
            "messages": channel_messages,
            "bindings": topic.of(names.events(source)),
        }
        operations[f"publish{source.title()}Events"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{source}"},
            "summary": f"The {source} service's relay publishes what its event store recorded.",
        }
    messages["DeadLetter"] = _kept_record(
        "DeadLetter",
        "A record a consumer could not process, with the reason; replay it with ipmg dlq replay.",
        DEAD_LETTER_HEADERS,
    )
    channels["deadLetter"] = {
        "address": names.dead_letter,
        "title": "dead letters",
        "description": "Records any consumer could not process, unchanged, keyed as they were.",
        "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
        "bindings": topic.of(names.dead_letter),
    }
    operations["sendDeadLetters"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/deadLetter"},
        "summary": "A consumer sends what it cannot process here and goes on with the next.",
    }
    messages["RetriedRecord"] = _kept_record(
        "RetriedRecord",
        "A dead letter sent back to the one consumer that failed it, for another try.",
        RETRY_HEADERS,
    )
    for consumer in consumers:
        channel = f"retry{consumer.title()}"
        channels[channel] = {
            "address": names.retry(consumer),
            "title": f"retries for {consumer}",
            "description": f"Dead letters replayed to the {consumer} consumer only.",
            "messages": {"RetriedRecord": {"$ref": "#/components/messages/RetriedRecord"}},
            "bindings": topic.of(names.retry(consumer)),
        }
        operations[f"replayTo{consumer.title()}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": f"ipmg dlq replay sends {consumer}'s dead letters back to it.",
        }
    return {
        "asyncapi": "3.1.0",
        "info": {
            "title": "IPMG Liaison events",
            "version": "1.0.0",
            "description": "The facts of the IPMG cycle, as the services publish them on Kafka.",
        },
        "defaultContentType": "application/json",
        "servers": _servers(bootstrap_servers),
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


class _TopicBinding:
    def __init__(self, partitions: int, replicas: int) -> None:
        self.partitions = partitions
        self.replicas = replicas

    def of(self, address: str) -> JsonObject:
        return {
            "kafka": {
                "topic": address,
                "partitions": self.partitions,
                "replicas": self.replicas,
                "topicConfiguration": {"retention.ms": -1, "cleanup.policy": ["delete"]},
                "bindingVersion": BINDING_VERSION,
            }
        }


def _servers(bootstrap_servers: str) -> JsonObject:
    hosts = [host.strip() for host in bootstrap_servers.split(",") if host.strip()]
    return {
        ("kafka" if len(hosts) == 1 else f"kafka{index}"): {
            "host": host,
            "protocol": "kafka",
            "description": "A Kafka bootstrap server (set by IPMG_KAFKA_BOOTSTRAP_SERVERS).",
        }
        for index, host in enumerate(hosts, start=1)
    }


def _payload_schemas(event_type: str, event_class: type[DomainEvent]) -> JsonObject:
    schema = event_class.model_json_schema(ref_template="#/components/schemas/{model}")
    found: JsonObject = dict(schema.pop("$defs", {}))
    found[event_type] = schema
    return found


def _event_message(
    name: str, source: str, event_type: str, event_class: type[DomainEvent]
) -> JsonObject:
    payload: JsonObject = {"$ref": f"#/components/schemas/{event_type}"}
    if "source" in event_class.model_fields:  # a checkpoint names the source it signs
        payload = {"allOf": [payload, {"properties": {"source": {"const": source}}}]}
    return {
        "name": event_type,
        "title": f"{event_type} ({source})",
        "summary": (event_class.__doc__ or event_type).strip().splitlines()[0],
        "contentType": "application/json",
        "headers": EVENT_HEADERS,
        "payload": {
            "allOf": [
                {"$ref": "#/components/schemas/Envelope"},
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": event_type},
                        "schema_version": {"const": event_class.schema_version},
                        "source": {"const": source},
                        "payload": payload,
                    },
                },
            ]
        },
        "bindings": {"kafka": {"key": STREAM_KEY, "bindingVersion": BINDING_VERSION}},
    }


def _kept_record(name: str, summary: str, headers: JsonObject) -> JsonObject:
    return {
        "name": name,
        "title": name,
        "summary": summary,
        "contentType": "application/json",
        "headers": headers,
        "payload": {
            "description": (
                "The original record's value, byte for byte: usually an event envelope, but "
                "possibly unparseable (that may be why it is here)."
            )
        },
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "The original record's key."},
                "bindingVersion": BINDING_VERSION,
            }
        },
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
