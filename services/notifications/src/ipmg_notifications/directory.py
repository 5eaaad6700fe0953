"""The member directory: who in each unit receives what, at which address.

It is a versioned file (``directory.json`` in this package, or the file named by
``IPMG_NOTIFICATIONS_DIRECTORY_PATH``), validated when the service starts: a directory that
leaves a unit without a focal person, or names an address twice, stops the start with the
reason instead of silently sending to nobody.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    UrlConstraints,
    model_validator,
)

from ipmg_shared.actors import Unit

PACKAGED_DIRECTORY = "directory.json"

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, max_length=254, pattern=r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$"
    ),
]


class DirectoryRole(StrEnum):
    MEMBER = "member"  # an IPMG member: a minister, a secretary or a commission's chairperson
    FOCAL_PERSON = "focal_person"  # the unit's liaison: feedback and progress reports
    SECRETARIAT = "secretariat"  # NCSW staff who run the IPMG's work


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Person(_Entry):
    name: Name
    title: Name  # e.g. "Secretary, Women Development Department"
    role: DirectoryRole
    email: Email


class UnitEntry(_Entry):
    unit: Unit
    # The unit's own system, if it takes notifications as signed JSON posts.
    webhook_url: Annotated[HttpUrl, UrlConstraints(max_length=500)] | None = None
    people: tuple[Person, ...] = Field(min_length=1)

    def people_in(self, roles: Collection[DirectoryRole]) -> tuple[Person, ...]:
        return tuple(person for person in self.people if person.role in roles)


class Directory(_Entry):
    version: int = Field(ge=1)  # raised with every change, so a sent message names its source
    revised_on: date
    units: tuple[UnitEntry, ...]

    @model_validator(mode="after")
    def _complete_and_unambiguous(self) -> Self:
        listed = [entry.unit for entry in self.units]
        missing = [unit.value for unit in Unit if unit not in listed]
        if missing:
            raise ValueError(f"units missing from the directory: {', '.join(missing)}")
        if len(set(listed)) != len(listed):
            raise ValueError("a unit is listed more than once")
        emails = [person.email.lower() for entry in self.units for person in entry.people]
        repeated = sorted({email for email in emails if emails.count(email) > 1})
        if repeated:
            raise ValueError(f"addresses listed more than once: {', '.join(repeated)}")
        for entry in self.units:
            if not entry.people_in([DirectoryRole.FOCAL_PERSON]):
                raise ValueError(f"{entry.unit.value} has no focal person")
        if not self.entry(Unit.NCSW).people_in([DirectoryRole.SECRETARIAT]):
            raise ValueError("ncsw has no secretariat address for the quarterly digest")
        return self

    def entry(self, unit: Unit) -> UnitEntry:
        for entry in self.units:
            if entry.unit is unit:
                return entry
        raise KeyError(unit)


class DirectoryInvalid(Exception):
    """The directory file is missing or does not validate; the service does not start."""


def load_directory(path: Path | None = None) -> Directory:
    """The directory at ``path``, or the packaged one; raises DirectoryInvalid with the reason."""
    try:
        if path is None:
            text = resources.files("ipmg_notifications").joinpath(PACKAGED_DIRECTORY).read_text()
            where = f"packaged {PACKAGED_DIRECTORY}"
        else:
            text = path.read_text(encoding="utf-8")
            where = str(path)
    except OSError as error:
        raise DirectoryInvalid(f"cannot read the member directory: {error}") from error
    try:
        return Directory.model_validate_json(text)
    except ValueError as error:
        raise DirectoryInvalid(f"the member directory ({where}) is not valid: {error}") from error
