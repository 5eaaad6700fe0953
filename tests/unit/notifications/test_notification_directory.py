"""The member directory is validated at start: complete, unambiguous, reachable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ipmg_notifications.directory import DirectoryInvalid, DirectoryRole, load_directory
from ipmg_shared.actors import Unit
from tests.unit.notifications.examples import packaged_directory_document


def write(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "directory.json"
    path.write_text(json.dumps(document))
    return path


def test_the_packaged_directory_names_a_focal_person_for_every_unit() -> None:
    directory = load_directory()
    assert {entry.unit for entry in directory.units} == set(Unit)
    for unit in Unit:
        assert directory.entry(unit).people_in([DirectoryRole.FOCAL_PERSON])
    assert directory.entry(Unit.NCSW).people_in([DirectoryRole.SECRETARIAT])
    addresses = [person.email for entry in directory.units for person in entry.people]
    assert all(address.endswith("@example.org") for address in addresses)
    assert "focal.punjab@example.org" in addresses


def test_a_directory_file_replaces_the_packaged_one(tmp_path: Path) -> None:
    document = packaged_directory_document()
    document["version"] = 42
    assert load_directory(write(tmp_path, document)).version == 42


def _without_unit(document: dict[str, Any], unit: str) -> dict[str, Any]:
    return {**document, "units": [e for e in document["units"] if e["unit"] != unit]}


def _without_focal_person(document: dict[str, Any], unit: str) -> dict[str, Any]:
    for entry in document["units"]:
        if entry["unit"] == unit:
            entry["people"] = [p for p in entry["people"] if p["role"] != "focal_person"]
    return document


def _repeated_address(document: dict[str, Any]) -> dict[str, Any]:
    document["units"][1]["people"][0]["email"] = "FOCAL.punjab@example.org"
    return document


def _bad_address(document: dict[str, Any]) -> dict[str, Any]:
    document["units"][0]["people"][0]["email"] = "not an address"
    return document


def _unknown_role(document: dict[str, Any]) -> dict[str, Any]:
    document["units"][0]["people"][0]["role"] = "minister"
    return document


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda d: _without_unit(d, "gilgit-baltistan"), "units missing from the directory"),
        (lambda d: _without_focal_person(d, "sindh"), "sindh has no focal person"),
        (_repeated_address, "addresses listed more than once"),
        (_bad_address, "email"),
        (_unknown_role, "role"),
        (lambda d: {**d, "version": 0}, "version"),
    ],
)
def test_an_incomplete_or_ambiguous_directory_stops_the_start(
    tmp_path: Path, spoil: Any, reason: str
) -> None:
    with pytest.raises(DirectoryInvalid, match=reason):
        load_directory(write(tmp_path, spoil(packaged_directory_document())))


def test_a_missing_directory_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DirectoryInvalid, match="cannot read"):
        load_directory(tmp_path / "absent.json")
