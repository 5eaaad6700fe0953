from __future__ import annotations

from ipmg_shared.actors import Role, Unit
from ipmg_shared.auth import issue_token
from ipmg_shared.settings import Settings


def bearer(
    settings: Settings, unit: Unit, role: Role, subject: str | None = None
) -> dict[str, str]:
    token = issue_token(
        settings, subject=subject or f"{role.value}@{unit.value}.example.org", unit=unit, role=role
    )
    return {"Authorization": f"Bearer {token}"}


def secretariat(settings: Settings) -> dict[str, str]:
    return bearer(settings, Unit.NCSW, Role.SECRETARIAT)


def focal_person(settings: Settings, unit: Unit) -> dict[str, str]:
    return bearer(settings, unit, Role.FOCAL_PERSON)
