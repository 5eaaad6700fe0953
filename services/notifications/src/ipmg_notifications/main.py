"""Wiring of the notifications service: what it stores, serves and consumes.

At start (when the runtime asks for its subscriptions) the service reads its settings and
validates its member directory; a bad directory stops the start with the reason. The consumer
plans deliveries; ``on_start`` runs the delivery worker and the reminder scheduler beside it.
``build_service`` takes a clock so tests can move time; ``service`` is the real one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from ipmg_contracts.meetings import REGISTRY as MEETING_EVENTS
from ipmg_contracts.notifications import REGISTRY, Channel
from ipmg_contracts.resolutions import REGISTRY as RESOLUTION_EVENTS
from ipmg_notifications.api import router
from ipmg_notifications.channels import Senders, SmtpSender, WebhookSender
from ipmg_notifications.cli import cli
from ipmg_notifications.directory import Directory, load_directory
from ipmg_notifications.domain import ReminderPolicy, RetryPolicy
from ipmg_notifications.handlers import NotificationHandler
from ipmg_notifications.reminders import ReminderScheduler
from ipmg_notifications.settings import NotificationSettings, webhook_key_problems
from ipmg_notifications.worker import DeliveryWorker
from ipmg_shared.consumer import GATHER_MS_IN_THE_BACKGROUND, Subscription
from ipmg_shared.db import Migration, consumer_migrations, event_store_migrations, migrations_in
from ipmg_shared.runtime import ServiceContext, ServiceDefinition
from ipmg_shared.settings import Settings

NAME = "notifications"
CONSUMER = "notifications"
PARTS = "notifications.parts"  # where the started parts wait in ServiceContext.extras

Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(UTC)


def migrations() -> list[Migration]:
    return [
        *event_store_migrations(),
        *consumer_migrations(),
        *migrations_in("ipmg_notifications", NAME),
    ]


@dataclass
class NotificationParts:
    """The service's adapters, built once its settings and directory are known."""

    settings: NotificationSettings
    directory: Directory
    clock: Clock

    @classmethod
    def load(cls, settings: NotificationSettings, clock: Clock) -> NotificationParts:
        ZoneInfo(settings.timezone)  # an unknown zone fails here, at start
        return cls(settings, load_directory(settings.directory_path), clock)

    def handler(self) -> NotificationHandler:
        return NotificationHandler(
            self.directory,
            stale_after=timedelta(days=self.settings.stale_after_days),
            clock=self.clock,
            timezone=ZoneInfo(self.settings.timezone),
        )

    async def run(self, context: ServiceContext) -> None:
        """The delivery worker and the reminder scheduler, until cancelled."""
        assert context.store is not None
        settings = self.settings
        acquire_timeout_s = context.settings.pool_acquire_timeout_s
        async with httpx.AsyncClient() as client:
            senders: Senders = {
                Channel.EMAIL: SmtpSender(settings),
                Channel.WEBHOOK: WebhookSender(settings, client),
            }
            worker = DeliveryWorker(
                context.pool,
                context.store,
                senders,
                RetryPolicy(settings.max_attempts, settings.retry_base_s, settings.retry_max_s),
                clock=self.clock,
                lease_s=settings.lease_s,
                poll_interval_s=settings.poll_interval_s,
                acquire_timeout_s=acquire_timeout_s,
            )
            scheduler = ReminderScheduler(
                context.pool,
                context.store,
                self.directory,
                ReminderPolicy(settings.reminder_lead_days, settings.stale_after_days),
                clock=self.clock,
                timezone=ZoneInfo(settings.timezone),
                acquire_timeout_s=acquire_timeout_s,
            )
            # A task group, not gather: on cancellation it waits for both to finish, so the
            # worker can complete the message in hand before the pool closes.
            async with asyncio.TaskGroup() as group:
                group.create_task(
                    worker.run(
                        context.settings,
                        context.settings.service_dsn(context.name),
                        settings.worker_concurrency,
                    )
                )
                group.create_task(scheduler.run(settings.scheduler_interval_s))


def build_service(
    *, clock: Clock = wall_clock, settings: NotificationSettings | None = None
) -> ServiceDefinition:
    def parts_of(context: ServiceContext) -> NotificationParts:
        parts = context.extras.get(PARTS)
        if not isinstance(parts, NotificationParts):
            parts = NotificationParts.load(settings or NotificationSettings(), clock)
            context.extras[PARTS] = parts
        return parts

    def subscriptions(context: ServiceContext) -> Sequence[Subscription]:
        return [
            Subscription(
                consumer=CONSUMER,
                sources={"meetings": MEETING_EVENTS, "resolutions": RESOLUTION_EVENTS},
                handler=parts_of(context).handler(),
                topic_names=context.settings.topics,
                max_attempts=context.settings.consumer_max_attempts,
                gather_ms=GATHER_MS_IN_THE_BACKGROUND,
            )
        ]

    async def on_start(context: ServiceContext) -> None:
        await parts_of(context).run(context)

    def secret_problems(_: Settings) -> list[str]:
        chosen = settings or NotificationSettings()
        return webhook_key_problems(chosen, load_directory(chosen.directory_path))

    return ServiceDefinition(
        name=NAME,
        migrations=migrations,
        registry=REGISTRY,
        append_only_tables=("events",),
        routers=lambda: [router],
        subscriptions=subscriptions,
        cli=cli,
        on_start=on_start,
        secret_problems=secret_problems,
    )


service = build_service()
