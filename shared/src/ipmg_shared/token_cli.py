"""What ``ipmg token revoke`` does: the token id into every service's own database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from ipmg_shared.db import connect
from ipmg_shared.revocation import revoke
from ipmg_shared.settings import Settings


async def revoke_everywhere(
    settings: Settings, services: Sequence[str], jti: str, reason: str
) -> list[str]:
    """Revoke ``jti`` in each service's database (as the administrator); the services done.

    The row is kept until no token issued before now can still be valid under the cap.
    """
    until = datetime.now(UTC) + timedelta(hours=settings.token_max_lifetime_hours)
    done = []
    for service in services:
        connection = await connect(settings.admin_dsn(settings.service_database(service)), settings)
        try:
            await revoke(connection, jti, until, reason)
        finally:
            await connection.close()
        done.append(service)
    return done
