"""Who may do what on Kafka: one principal per service, each held to its own topics.

These rules are the only statement of the model. ``ipmg kafka acls apply`` writes them to the
broker (the compose ``migrate`` job runs it), the operations guide describes them, and the
integration tests apply them to a real broker with SCRAM and the KRaft authorizer, then check
what each principal can and cannot do.

- A write service writes its own event topic and nothing else of the record.
- A consumer reads the event topics it consumes and its own retry topic, in its own group, and
  writes the dead-letter topic: that is where it puts what it cannot process.
- The viewer (the read-only Kafka UI) reads every topic of the system and describes the
  groups; it writes nothing.
- Replaying dead letters onto a retry topic, creating topics and setting ACLs belong to the
  administrative principal (the ``migrate`` job and the ``ops`` container), a super user.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ipmg_shared.settings import SERVICES, WRITE_SOURCES, TopicNames

ADMIN_PRINCIPAL = "ipmg-admin"
VIEWER = "viewer"
# Every SCRAM user besides the administrator: one per service, and the viewer.
USERS = (*SERVICES, VIEWER)

# The event topics each service's consumers read. Reporting is the read model of the whole
# record, so it may read every source's topic, including those it does not project yet.
CONSUMES: dict[str, tuple[str, ...]] = {
    "meetings": (),
    "resolutions": ("meetings",),
    "notifications": ("meetings", "resolutions"),
    "reporting": WRITE_SOURCES,
}


class ResourceType(IntEnum):
    """Kafka's wire codes (org.apache.kafka.common.resource.ResourceType)."""

    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class Operation(IntEnum):
    """Kafka's wire codes (org.apache.kafka.common.acl.AclOperation)."""

    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


LITERAL = 3  # PatternType.LITERAL: the resource name is matched exactly
ALLOW = 3  # AclPermissionType.ALLOW


@dataclass(frozen=True, order=True)
class AclRule:
    """One ALLOW entry, from any host. Everything not allowed is denied."""

    principal: str
    resource_type: ResourceType
    resource_name: str
    operation: Operation

    @property
    def kafka_principal(self) -> str:
        return f"User:{self.principal}"

    def describe(self) -> str:
        return (
            f"{self.principal}: {self.operation.name} "
            f"{self.resource_type.name.lower()} {self.resource_name}"
        )


def service_principal(user: str) -> str:
    """The SCRAM user a service (or the viewer) authenticates as."""
    return f"ipmg-{user}"


def service_rules(service: str, topics: TopicNames) -> list[AclRule]:
    principal = service_principal(service)
    rules: list[AclRule] = []

    def allow(resource_type: ResourceType, name: str, operation: Operation) -> None:
        rules.append(AclRule(principal, resource_type, name, operation))

    if service in WRITE_SOURCES:
        allow(ResourceType.TOPIC, topics.events(service), Operation.WRITE)
    sources = CONSUMES[service]
    if sources:
        for source in sources:
            allow(ResourceType.TOPIC, topics.events(source), Operation.READ)
        allow(ResourceType.TOPIC, topics.retry(service), Operation.READ)
        allow(ResourceType.GROUP, topics.group(service), Operation.READ)
        allow(ResourceType.TOPIC, topics.dead_letter, Operation.WRITE)
    return rules


def viewer_rules(topics: TopicNames) -> list[AclRule]:
    principal = service_principal(VIEWER)
    every_topic = [
        *(topics.events(source) for source in WRITE_SOURCES),
        topics.dead_letter,
        *(topics.retry(service) for service in SERVICES),
    ]
    rules = [
        AclRule(principal, ResourceType.TOPIC, topic, operation)
        for topic in every_topic
        for operation in (Operation.READ, Operation.DESCRIBE_CONFIGS)
    ]
    rules += [
        AclRule(principal, ResourceType.GROUP, topics.group(service), Operation.DESCRIBE)
        for service in SERVICES
        if CONSUMES[service]
    ]
    return rules


def acl_rules(topics: TopicNames) -> list[AclRule]:
    """Every ALLOW rule of every principal but the administrator, in a stable order."""
    rules = [rule for service in SERVICES for rule in service_rules(service, topics)]
    return sorted([*rules, *viewer_rules(topics)])


def principals() -> list[str]:
    """Every SCRAM user the system needs: the administrator, one per service, the viewer."""
    return [ADMIN_PRINCIPAL, *(service_principal(user) for user in USERS)]
