"""Wiring of the meetings service: what it stores and serves."""

from __future__ import annotations

from ipmg_contracts.meetings import REGISTRY
from ipmg_meetings.api import router
from ipmg_shared.db import consumer_migrations, event_store_migrations
from ipmg_shared.runtime import ServiceDefinition

service = ServiceDefinition(
    name="meetings",
    migrations=lambda: [*event_store_migrations(), *consumer_migrations()],
    registry=REGISTRY,
    append_only_tables=("events",),
    routers=lambda: [router()],
)
