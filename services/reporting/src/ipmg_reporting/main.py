"""Wiring of the reporting service: projections fed by every event topic."""

from __future__ import annotations

from ipmg_shared.db import consumer_migrations
from ipmg_shared.runtime import ServiceDefinition

service = ServiceDefinition(
    name="reporting",
    migrations=consumer_migrations,
)
