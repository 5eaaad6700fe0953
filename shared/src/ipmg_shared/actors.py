"""Who does things: member units, roles and the actor recorded on every event."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Unit(StrEnum):
    """The federating units and federal members of the IPMG (slugs used everywhere)."""

    PUNJAB = "punjab"
    SINDH = "sindh"
    KHYBER_PAKHTUNKHWA = "khyber-pakhtunkhwa"
    BALOCHISTAN = "balochistan"
    AJK = "ajk"
    GILGIT_BALTISTAN = "gilgit-baltistan"
    NCSW = "ncsw"
    MLJHR = "mljhr"


class Role(StrEnum):
    SECRETARIAT = "secretariat"  # NCSW staff who run the IPMG lifecycle
    FOCAL_PERSON = "focal_person"  # a unit's liaison: feedback and progress for their unit
    AUDITOR = "auditor"  # reads everything, changes nothing
    SERVICE = "service"  # a service acting on its own (relay, reminders, checkpoints)


class Actor(BaseModel):
    """Recorded on every event: who did it, for which unit, in which role."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str = Field(min_length=1, max_length=200)
    unit: Unit
    role: Role

    @property
    def is_secretariat(self) -> bool:
        return self.role is Role.SECRETARIAT and self.unit is Unit.NCSW

    @classmethod
    def service(cls, name: str) -> Actor:
        return cls(subject=f"service:{name}", unit=Unit.NCSW, role=Role.SERVICE)
