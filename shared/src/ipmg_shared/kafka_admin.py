"""Writing ``kafka_acls``'s principals and rules to a broker through the Kafka admin protocol.

aiokafka's admin client has no ACL or SCRAM methods, but its protocol module has the ACL
requests (CreateAcls, DescribeAcls, DeleteAcls v1, which Kafka 4 still serves) and the
framework for flexible requests, in which AlterUserScramCredentials (KIP-554) is written below.
The caller must be a super user (the ``ipmg-admin`` principal).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from ipmg_shared.kafka_acls import (
    ALLOW,
    LITERAL,
    USERS,
    AclRule,
    Operation,
    ResourceType,
    acl_rules,
    service_principal,
)
from ipmg_shared.settings import Settings
from ipmg_shared.topics import admin_client

ANY = 1  # the wildcard code of resource type, pattern type, operation and permission filters


async def apply_acls(settings: Settings) -> tuple[list[AclRule], list[AclRule]]:
    """Make the broker's ALLOW rules for the system's principals exactly ``acl_rules``.

    Returns (added, removed). Creating an existing rule is a no-op on the broker, so this is
    idempotent; a rule no longer in the code is removed, so a narrowed rule narrows the broker.
    Only rules on names under this system's topic prefix are touched.
    """
    wanted = set(acl_rules(settings.topics))
    prefix = settings.topic_prefix
    admin = admin_client(settings)
    await asyncio.wait_for(admin.start(), 30)
    try:
        present = {r for r in await _service_acls(admin) if r.resource_name.startswith(prefix)}
        added = sorted(wanted - present)
        removed = sorted(present - wanted)
        await _create(admin, added)
        for rule in removed:
            response = await admin._send_request(DeleteAclsRequest(*_fields(rule)))
            for error_code, message, _ in response.filter_responses:
                _raise_for(error_code, message, rule)
        return added, removed
    finally:
        await admin.close()


async def create_acls(settings: Settings, rules: Iterable[AclRule]) -> None:
    """Add ALLOW rules as they are (``apply_acls`` removes any the code does not state)."""
    admin = admin_client(settings)
    await asyncio.wait_for(admin.start(), 30)
    try:
        await _create(admin, rules)
    finally:
        await admin.close()


async def _create(admin: AIOKafkaAdminClient, rules: Iterable[AclRule]) -> None:
    for rule in rules:
        response = await admin._send_request(CreateAclsRequest(*_fields(rule)))
        for error_code, message in response.creation_responses:
            _raise_for(error_code, message, rule)


async def service_acls(settings: Settings) -> list[AclRule]:
    """The literal ALLOW rules the broker holds for the system's principals (other kinds of
    entries, e.g. a DENY added by hand, are neither listed nor removed)."""
    admin = admin_client(settings)
    await asyncio.wait_for(admin.start(), 30)
    try:
        return sorted(await _service_acls(admin))
    finally:
        await admin.close()


async def _service_acls(admin: AIOKafkaAdminClient) -> Iterable[AclRule]:
    found: list[AclRule] = []
    for user in USERS:
        principal = service_principal(user)
        request = DescribeAclsRequest(ANY, None, ANY, f"User:{principal}", None, ANY, ANY)
        response: Any = await admin._send_request(request)
        _raise_for(response.error_code, response.error_message, principal)
        for resource_type, name, pattern_type, acls in response.resources:
            for _, host, operation, permission in acls:
                if permission == ALLOW and pattern_type == LITERAL and host == "*":
                    found.append(
                        AclRule(
                            principal,
                            ResourceType(resource_type),
                            name,
                            Operation(operation),
                        )
                    )
    return found


def _fields(rule: AclRule) -> tuple[int, str, int, str, str, int, int]:
    return (
        int(rule.resource_type),
        rule.resource_name,
        LITERAL,
        rule.kafka_principal,
        "*",
        int(rule.operation),
        ALLOW,
    )


def _raise_for(error_code: int, message: str | None, subject: object) -> None:
    if error_code:
        raise for_code(error_code)(f"{subject}: {message or 'refused'}")


SCRAM_SHA_512 = 2  # ScramMechanism.SCRAM_SHA_512
SCRAM_ITERATIONS = 8192  # Kafka accepts 4096 to 16384 for SHA-512

# AlterUserScramCredentials v0 (the only version), as in Kafka's message definition. aiokafka's
# protocol classes are untyped: these extend its bases as its own requests do.


class AlterUserScramCredentialsResponse_v0(Response):  # type: ignore[misc]
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentialsRequest_v0(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = AlterUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("tags", TaggedFields),
            ),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


AlterUserScramCredentialsRequestStruct: TypeAlias = AlterUserScramCredentialsRequest_v0


class AlterUserScramCredentialsRequest(Request[AlterUserScramCredentialsRequestStruct]):  # type: ignore[misc]
    API_KEY = 51

    def __init__(self, upsertions: list[tuple[str, int, int, bytes, bytes, dict[int, bytes]]]):
        self._upsertions = upsertions

    def build(
        self, request_struct_class: type[AlterUserScramCredentialsRequestStruct]
    ) -> AlterUserScramCredentialsRequestStruct:
        return request_struct_class([], self._upsertions, {})


def salted_password(password: str, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> bytes:
    """SCRAM's Hi(): PBKDF2 with HMAC-SHA-512 (RFC 5802, 2.2). Only this leaves the process."""
    return hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)


async def upsert_scram_users(settings: Settings, passwords: Mapping[str, str]) -> list[str]:
    """Create or replace the SCRAM-SHA-512 credential of each user; returns the user names.

    Connections already open keep working; new ones need the new password.
    """
    upsertions: list[tuple[str, int, int, bytes, bytes, dict[int, bytes]]] = []
    for user, password in sorted(passwords.items()):
        if not password:
            raise ValueError(f"the Kafka password of {user} is empty")
        salt = secrets.token_bytes(32)
        upsertions.append(
            (user, SCRAM_SHA_512, SCRAM_ITERATIONS, salt, salted_password(password, salt), {})
        )
    admin = admin_client(settings)
    await asyncio.wait_for(admin.start(), 30)
    try:
        response: Any = await admin._send_request(AlterUserScramCredentialsRequest(upsertions))
        for user, error_code, message, _ in response.results:
            _raise_for(error_code, message, user)
        return sorted(passwords)
    finally:
        await admin.close()
