"""Wiring of the reporting service: projections fed by every event topic, the report API,
the dashboard, and the ``ipmg reporting`` commands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter

from ipmg_reporting.cli import cli
from ipmg_reporting.projections import CONSUMER, SOURCES
from ipmg_reporting.schema import POOL_OPTIONS, reporting_migrations
from ipmg_shared.consumer import Subscription
from ipmg_shared.runtime import ServiceContext, ServiceDefinition


def routers() -> Sequence[APIRouter]:
    from ipmg_reporting.api import router as reports
    from ipmg_reporting.dashboard import router as dashboard
    from ipmg_reporting.signin import router as signin

    return [reports, dashboard, signin]


def subscriptions(context: ServiceContext) -> Sequence[Subscription]:
    from ipmg_reporting.live import apply_to_live, hold_off_swaps

    return [
        Subscription(
            consumer=CONSUMER,
            sources=SOURCES,
            handler=apply_to_live,
            on_transaction_start=hold_off_swaps,
            topic_names=context.settings.topics,
            max_attempts=context.settings.consumer_max_attempts,
            # Documents are per stream, so topics need no order between them; one consumer
            # over all would hold a topic's records back while it long-polls the others.
            consumer_per_topic=True,
        )
    ]


async def on_start(context: ServiceContext) -> Any:
    """A live copy of another projection version is rebuilt beside itself, then swapped."""
    from ipmg_reporting.rebuild import keep_projection_current

    await keep_projection_current(context.settings, context.pool, context.name)


service = ServiceDefinition(
    name="reporting",
    migrations=reporting_migrations,
    routers=routers,
    subscriptions=subscriptions,
    cli=cli,
    on_start=on_start,
    pool_options=POOL_OPTIONS,
)
