"""Idempotency keys that belong to their principal.

A client's ``Idempotency-Key`` is stored under an id made of the key, the route and the
principal who sent it (subject, unit and role): the same principal retrying gets the first
answer, another principal sending the same key is another command.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ipmg_shared.actors import Actor
from ipmg_shared.canonical import canonical_bytes
from ipmg_shared.store import CommandId

# Stored ids made from a principal; ids stored before (the bare key) keep their meaning.
SCOPED_PREFIX = "principal-scoped:"


def principal_command_id(actor: Actor, route: str, key: str, request: Any) -> CommandId:
    """The command id of ``key`` sent by ``actor`` to ``route``, fingerprinting ``request``."""
    scope = {
        "subject": actor.subject,
        "unit": actor.unit.value,
        "role": actor.role.value,
        "route": route,
        "key": key,
    }
    scoped = SCOPED_PREFIX + hashlib.sha256(canonical_bytes(scope)).hexdigest()
    fingerprint = CommandId.of(key, request).fingerprint
    return CommandId(key=scoped, fingerprint=fingerprint, client_key=key)
