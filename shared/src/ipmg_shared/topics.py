"""Event topics, created idempotently through the Kafka admin API with DESIGN.md's settings."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from ipmg_shared.settings import SERVICES, WRITE_SOURCES, Settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    config: dict[str, str]


def topic_specs(settings: Settings, sources: Iterable[str] = WRITE_SOURCES) -> list[TopicSpec]:
    keep_forever = {"retention.ms": "-1", "cleanup.policy": "delete"}
    if settings.topic_replication_factor > 1:
        keep_forever["min.insync.replicas"] = "2"
    names = settings.topics
    specs = [TopicSpec(names.events(source), keep_forever) for source in sources]
    specs.append(TopicSpec(names.dead_letter, keep_forever))
    specs += [TopicSpec(names.retry(service), keep_forever) for service in SERVICES]
    return specs


def admin_client(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=15000)


async def ensure_topics(settings: Settings, sources: Iterable[str] = WRITE_SOURCES) -> list[str]:
    """Create the topics that do not exist; returns the names created by this call."""
    admin = admin_client(settings)
    await asyncio.wait_for(admin.start(), 30)
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_specs(settings, sources) if spec.name not in existing]
        created = []
        for spec in missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            name=spec.name,
                            num_partitions=settings.topic_partitions,
                            replication_factor=settings.topic_replication_factor,
                            topic_configs=spec.config,
                        )
                    ]
                )
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another instance created it in between: that is the goal
        return created
    finally:
        await admin.close()
