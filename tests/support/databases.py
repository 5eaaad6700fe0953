"""Databases of a test's own on the shared PostgreSQL server."""

from __future__ import annotations

from ipmg_shared.db import (
    apply_migrations,
    consumer_migrations,
    event_store_migrations,
    provision_service_database,
)
from ipmg_shared.settings import Settings


async def fresh_service_database(settings: Settings, name: str) -> str:
    """A new database and role migrated like a write service's; returns the service name."""
    await provision_service_database(settings, name)
    await apply_migrations(
        settings, name, [*event_store_migrations(), *consumer_migrations()], ("events",)
    )
    return name
