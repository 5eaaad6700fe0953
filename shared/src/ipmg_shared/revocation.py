"""Revoked tokens: `ipmg token revoke` writes the token id into every service's own database;
each service reads its table again every few seconds and refuses the ids it lists."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg
import structlog

from ipmg_shared.db import UNAVAILABLE_ERRORS
from ipmg_shared.settings import Settings

if TYPE_CHECKING:
    from ipmg_shared.db import DbConnection

log = structlog.get_logger(__name__)

# Rows may be pruned once past expires_at: the lifetime cap refuses the token by then anyway.
CURRENT_REVOCATIONS = "SELECT jti FROM revoked_tokens WHERE expires_at > now()"
REVOKE = """INSERT INTO revoked_tokens (jti, expires_at, reason) VALUES ($1, $2, $3)
            ON CONFLICT (jti) DO UPDATE
            SET expires_at = greatest(revoked_tokens.expires_at, EXCLUDED.expires_at)"""


class RevocationList:
    """The revoked token ids of one service, re-read at most every ``refresh_s``.

    While the database does not answer, the last list stands for ``max_stale_s``; after that
    (or before any list was read) the database error is raised, and the request gets 503.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._refresh_s = settings.token_revocation_refresh_s
        self._max_stale_s = settings.token_revocation_max_stale_s
        self._acquire_timeout_s = settings.pool_acquire_timeout_s
        self._clock = clock
        self._revoked: frozenset[str] = frozenset()
        self._read_at = float("-inf")
        self._next_read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def is_revoked(self, jti: str) -> bool:
        if self._clock() >= self._next_read_at:
            async with self._lock:
                if self._clock() >= self._next_read_at:
                    await self._read()
        return jti in self._revoked

    async def _read(self) -> None:
        try:
            async with self._pool.acquire(timeout=self._acquire_timeout_s) as connection:
                rows = await connection.fetch(CURRENT_REVOCATIONS)
        except UNAVAILABLE_ERRORS as error:
            if self._clock() - self._read_at > self._max_stale_s:
                raise
            log.warning("revocations_unreadable", error=repr(error))
            self._next_read_at = self._clock() + self._refresh_s
            return
        self._revoked = frozenset(row["jti"] for row in rows)
        self._read_at = self._clock()
        self._next_read_at = self._read_at + self._refresh_s


async def revoke(connection: DbConnection, jti: str, expires_at: datetime, reason: str) -> None:
    await connection.execute(REVOKE, jti, expires_at, reason)
