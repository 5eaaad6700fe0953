"""The published contract of every event type and schema version, kept in the repository.

``contracts/published/<source>/<EventType>.v<N>.json`` is the JSON Schema of a payload as it
was released. The check compares each with the current payload models: a version's schema may
grow (``schema_compat``), a changed one needs a new ``schema_version`` and upcasters from every
published version, and a published event type never disappears. ``publish`` writes the files
of new versions and the growth of current ones; it refuses a breaking change.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ipmg_shared.events import DomainEvent, EventRegistry, JsonObject
from ipmg_shared.schema_compat import breaking_changes

FILE_NAME = re.compile(r"^(?P<type>[A-Za-z][A-Za-z0-9]*)\.v(?P<version>[1-9][0-9]*)\.json$")


@dataclass(frozen=True)
class PublishedContract:
    source: str
    event_type: str
    version: int
    path: Path

    def schema(self) -> JsonObject:
        loaded: JsonObject = json.loads(self.path.read_text())
        return loaded


def contract_schema(event_class: type[DomainEvent]) -> JsonObject:
    return event_class.model_json_schema()


def contract_path(folder: Path, source: str, event_class: type[DomainEvent]) -> Path:
    return folder / source / f"{event_class.event_type}.v{event_class.schema_version}.json"


def published_contracts(folder: Path) -> list[PublishedContract]:
    found = []
    for path in sorted(folder.glob("*/*.json")):
        match = FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path}: not named <EventType>.v<version>.json")
        found.append(
            PublishedContract(path.parent.name, match["type"], int(match["version"]), path)
        )
    return found


def contract_problems(folder: Path, registries: Mapping[str, EventRegistry]) -> list[str]:
    """What breaks a published contract, one line each; empty when every one still holds."""
    problems = []
    for published in published_contracts(folder):
        registry = registries.get(published.source)
        event_class = None if registry is None else registry.event_types.get(published.event_type)
        name = f"{published.source}/{published.event_type} v{published.version}"
        if registry is None or event_class is None:
            problems.append(f"{name}: published, but no longer an event of {published.source}")
        elif published.version > event_class.schema_version:
            problems.append(f"{name}: published, but the code is at v{event_class.schema_version}")
        elif published.version < event_class.schema_version:
            if not registry.upcasts(published.event_type, published.version):
                problems.append(f"{name}: no upcaster chain to v{event_class.schema_version}")
        else:
            problems += [
                f"{name}: {change} (a new schema_version and an upcaster are needed)"
                for change in breaking_changes(published.schema(), contract_schema(event_class))
            ]
    for source, registry in registries.items():
        for event_class in registry.event_types.values():
            if not contract_path(folder, source, event_class).exists():
                problems.append(
                    f"{source}/{event_class.event_type} v{event_class.schema_version}: "
                    "not published yet (ipmg contracts publish)"
                )
    return problems


def publish(folder: Path, registries: Mapping[str, EventRegistry]) -> list[Path]:
    """Write the current version's contract of every event type where it is new or has only
    grown; returns the files written. Raises ``BreakingChange`` before writing anything."""
    breaking = [p for p in contract_problems(folder, registries) if "not published yet" not in p]
    if breaking:
        raise BreakingChange(breaking)
    written = []
    for source, registry in sorted(registries.items()):
        for event_class in registry.event_types.values():
            path = contract_path(folder, source, event_class)
            text = json.dumps(contract_schema(event_class), indent=2, sort_keys=True) + "\n"
            if not path.exists() or path.read_text() != text:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                written.append(path)
    return written


class BreakingChange(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
