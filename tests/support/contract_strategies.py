"""Hypothesis strategies for event payloads, built from each payload model's JSON Schema.

The schema is the published contract, so these draw what a consumer may legally receive:
any date from year 1 to 9999, any length within the bounds, any enum member. Values the
model's own validators refuse (a unit listed twice, a completed action below 100%) are drawn
again, since a producer cannot publish them.
"""

from __future__ import annotations

from datetime import UTC, date
from typing import Any, TypeGuard

from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ipmg_shared.events import DomainEvent, JsonObject

# Long enough to meet every bound's edge cases, short enough to keep examples fast.
STRING_CAP = 40
ARRAY_CAP = 4
# The contract's first and last years, drawn often: arithmetic on them is where dates overflow.
EDGE_DATES = st.dates(max_value=date(1, 12, 31)) | st.dates(min_value=date(9999, 1, 1))


def payloads(event_class: type[DomainEvent]) -> st.SearchStrategy[DomainEvent]:
    """Valid payloads of ``event_class``, as a consumer would decode them from the wire."""
    schema = event_class.model_json_schema()
    return from_schema(schema).map(lambda data: _validated(event_class, data)).filter(_is_event)


def from_schema(schema: JsonObject) -> st.SearchStrategy[Any]:
    """JSON values a payload schema (with its ``$defs``) accepts."""
    return _from_schema(schema, schema.get("$defs", {}))


def _is_event(value: DomainEvent | None) -> TypeGuard[DomainEvent]:
    return value is not None


def _validated(event_class: type[DomainEvent], data: Any) -> DomainEvent | None:
    try:
        return event_class.model_validate(data)
    except ValidationError:
        return None


def _from_schema(schema: JsonObject, defs: JsonObject) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        return _from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "anyOf" in schema:
        return st.one_of([_from_schema(option, defs) for option in schema["anyOf"]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {name: _from_schema(properties[name], defs) for name in properties if name in required},
            optional={
                name: _from_schema(properties[name], defs)
                for name in properties
                if name not in required
            },
        )
    if kind == "array":
        low = schema.get("minItems", 0)
        high = min(schema.get("maxItems", low + ARRAY_CAP), low + ARRAY_CAP)
        return st.lists(_from_schema(schema.get("items", {}), defs), min_size=low, max_size=high)
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "string":
        return _strings(schema)
    raise NotImplementedError(f"no strategy for the schema {schema}")


def _strings(schema: JsonObject) -> st.SearchStrategy[str]:
    match schema.get("format"):
        case "date":
            return (st.dates() | EDGE_DATES).map(lambda day: day.isoformat())
        case "date-time":
            return st.datetimes(timezones=st.just(UTC)).map(lambda at: at.isoformat())
        case "uuid":
            return st.uuids().map(str)
    if "pattern" in schema:
        pattern: str = schema["pattern"]
        return st.from_regex(pattern, fullmatch=True)
    low = schema.get("minLength", 0)
    high = min(schema.get("maxLength", low + STRING_CAP), low + STRING_CAP)
    return st.text(min_size=low, max_size=high)


def examples_of(event_class: type[DomainEvent], count: int) -> list[DomainEvent]:
    """``count`` payloads a store can hold (PostgreSQL's JSON holds no NUL character)."""
    found: list[DomainEvent] = []

    @settings(max_examples=count, database=None, phases=[Phase.generate], deadline=None)
    @given(payloads(event_class).filter(lambda event: "\\u0000" not in event.model_dump_json()))
    def collect(event: DomainEvent) -> None:
        found.append(event)

    collect()
    return found
