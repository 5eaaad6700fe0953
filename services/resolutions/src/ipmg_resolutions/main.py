"""Wiring of the resolutions service: what it stores, serves and consumes."""

from __future__ import annotations

from ipmg_shared.db import consumer_migrations, event_store_migrations
from ipmg_shared.events import EventRegistry
from ipmg_shared.runtime import ServiceDefinition

service = ServiceDefinition(
    name="resolutions",
    migrations=lambda: [*event_store_migrations(), *consumer_migrations()],
    registry=EventRegistry(),
    append_only_tables=("events",),
)
