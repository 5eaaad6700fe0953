"""Wiring of the resolutions service: what it stores, serves and consumes."""

from __future__ import annotations

from ipmg_contracts.resolutions import REGISTRY
from ipmg_resolutions.api import router
from ipmg_resolutions.handlers import subscriptions
from ipmg_shared.db import consumer_migrations, event_store_migrations, migrations_in
from ipmg_shared.runtime import ServiceDefinition

service = ServiceDefinition(
    name="resolutions",
    migrations=lambda: [
        *event_store_migrations(),
        *consumer_migrations(),
        *migrations_in("ipmg_resolutions", "resolutions"),
    ],
    registry=REGISTRY,
    append_only_tables=("events",),
    routers=lambda: [router()],
    subscriptions=subscriptions,
)
