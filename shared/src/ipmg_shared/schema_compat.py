"""Whether a payload's new JSON Schema still accepts everything its published one accepted.

Stored history is read with the current payload model, so a schema version may only grow: add
an optional field, loosen a bound, add an enum member. Removing or retyping a field, adding a
required one or tightening a bound needs a new ``schema_version`` and an upcaster. Written for
the schemas pydantic generates (``$defs``, ``$ref``, ``anyOf``), read conservatively: what it
cannot show to be compatible, it reports.
"""

from __future__ import annotations

import math
from typing import Any

from ipmg_shared.events import JsonObject

# Keywords that describe and never constrain.
ANNOTATIONS = {"title", "description", "default", "examples", "$defs"}
LOWER_BOUNDS = ("minLength", "minItems", "minimum", "exclusiveMinimum", "minProperties")
UPPER_BOUNDS = ("maxLength", "maxItems", "maximum", "exclusiveMaximum", "maxProperties")


def breaking_changes(published: JsonObject, current: JsonObject) -> list[str]:
    """What ``current`` refuses that ``published`` accepted, one line each; empty if none."""
    return _Comparison(published, current).changes("", published, current)


class _Comparison:
    def __init__(self, published: JsonObject, current: JsonObject) -> None:
        self.old_defs: JsonObject = published.get("$defs", {})
        self.new_defs: JsonObject = current.get("$defs", {})

    def changes(self, where: str, old: JsonObject, new: JsonObject) -> list[str]:
        old, new = self._resolved(old, self.old_defs), self._resolved(new, self.new_defs)
        if not _constrains(new):
            return []
        if "anyOf" in old:
            return [c for option in old["anyOf"] for c in self.changes(where, option, new)]
        if "anyOf" in new:
            if any(not self.changes(where, old, option) for option in new["anyOf"]):
                return []
            return [f"{_at(where)}: no longer accepts {_kind(old)}"]
        found = self._type_changes(where, old, new)
        if found:
            return found
        found += self._value_changes(where, old, new)
        found += self._bound_changes(where, old, new)
        if old.get("type") == "object":
            found += self._object_changes(where, old, new)
        if old.get("type") == "array" and "items" in old:
            found += self.changes(f"{where}[]", old["items"], new.get("items", {}))
        return found

    def _resolved(self, schema: JsonObject, defs: JsonObject) -> JsonObject:
        while "$ref" in schema:
            schema = {**defs[schema["$ref"].rsplit("/", 1)[-1]], **_without(schema, "$ref")}
        return schema

    def _type_changes(self, where: str, old: JsonObject, new: JsonObject) -> list[str]:
        old_types, new_types = _types(old), _types(new)
        if new_types is None or (old_types is not None and old_types <= _widened(new_types)):
            return []
        return [f"{_at(where)}: type {_kind(old)} became {_kind(new)}"]

    def _value_changes(self, where: str, old: JsonObject, new: JsonObject) -> list[str]:
        found = []
        if "const" in new and old.get("const", ...) != new["const"]:
            found.append(f"{_at(where)}: now fixed to {new['const']!r}")
        if "enum" in new:
            allowed = old.get("enum", [old["const"]] if "const" in old else None)
            dropped = None if allowed is None else [v for v in allowed if v not in new["enum"]]
            if allowed is None or dropped:
                found.append(f"{_at(where)}: no longer accepts {dropped or 'any value'}")
        for keyword in ("pattern", "format", "multipleOf"):
            if keyword in new and old.get(keyword) != new[keyword]:
                found.append(
                    f"{_at(where)}: {keyword} {old.get(keyword)!r} became {new[keyword]!r}"
                )
        return found

    def _bound_changes(self, where: str, old: JsonObject, new: JsonObject) -> list[str]:
        found = []
        for keyword in LOWER_BOUNDS:
            if new.get(keyword, -math.inf) > old.get(keyword, -math.inf):
                found.append(f"{_at(where)}: {keyword} raised to {new[keyword]}")
        for keyword in UPPER_BOUNDS:
            if new.get(keyword, math.inf) < old.get(keyword, math.inf):
                found.append(f"{_at(where)}: {keyword} lowered to {new[keyword]}")
        if new.get("uniqueItems") and not old.get("uniqueItems"):
            found.append(f"{_at(where)}: items must now be unique")
        return found

    def _object_changes(self, where: str, old: JsonObject, new: JsonObject) -> list[str]:
        found = []
        old_fields: JsonObject = old.get("properties", {})
        new_fields: JsonObject = new.get("properties", {})
        closed = new.get("additionalProperties") is False
        for name, schema in old_fields.items():
            if name in new_fields:
                found += self.changes(f"{where}.{name}", schema, new_fields[name])
            elif closed:
                found.append(f"{_at(f'{where}.{name}')}: removed")
        added_required = set(new.get("required", ())) - set(old.get("required", ()))
        for name in sorted(added_required):
            found.append(f"{_at(f'{where}.{name}')}: now required")
        if closed and old.get("additionalProperties") is not False:
            found.append(f"{_at(where)}: no longer accepts other fields")
        return found


def _constrains(schema: JsonObject) -> bool:
    return any(keyword not in ANNOTATIONS for keyword in schema)


def _without(schema: JsonObject, keyword: str) -> JsonObject:
    return {key: value for key, value in schema.items() if key != keyword}


def _types(schema: JsonObject) -> set[str] | None:
    kind: Any = schema.get("type")
    if kind is None:
        return None
    return {kind} if isinstance(kind, str) else set(kind)


def _widened(types: set[str]) -> set[str]:
    return types | {"integer"} if "number" in types else types


def _kind(schema: JsonObject) -> str:
    types = _types(schema)
    if types is not None:
        return "/".join(sorted(types))
    return "null" if schema.get("const", ...) is None else "its values"


def _at(where: str) -> str:
    return where.lstrip(".") or "the payload"
