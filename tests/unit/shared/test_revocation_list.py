"""A service's list of revoked tokens: re-read every few seconds; while its database does not
answer the old list stands for a while, then the service refuses to guess (the error, 503)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from pydantic import SecretStr

from ipmg_shared.revocation import RevocationList
from ipmg_shared.settings import Settings

SETTINGS = Settings(
    jwt_secret=SecretStr("a-test-signing-key-of-enough-length-0123"),
    token_revocation_refresh_s=5.0,
    token_revocation_max_stale_s=60.0,
)


class Database:
    def __init__(self) -> None:
        self.revoked: list[str] = []
        self.up = True
        self.reads = 0

    async def fetch(self, query: str) -> list[dict[str, str]]:
        self.reads += 1
        if not self.up:
            raise ConnectionRefusedError("the database does not answer")
        return [{"jti": jti} for jti in self.revoked]

    @asynccontextmanager
    async def acquire(self, timeout: float) -> AsyncIterator[Database]:
        yield self


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_list_is_read_again_only_after_the_refresh_interval() -> None:
    database, clock = Database(), Clock()
    revocations = RevocationList(database, SETTINGS, clock)  # type: ignore[arg-type]
    assert not await revocations.is_revoked("a")
    database.revoked.append("a")
    clock.now += 4.9
    assert not await revocations.is_revoked("a")  # not yet re-read
    assert database.reads == 1
    clock.now += 0.2
    assert await revocations.is_revoked("a")
    assert database.reads == 2


async def test_an_unreadable_list_stands_for_a_minute_then_the_error_is_raised() -> None:
    database, clock = Database(), Clock()
    database.revoked.append("a")
    revocations = RevocationList(database, SETTINGS, clock)  # type: ignore[arg-type]
    assert await revocations.is_revoked("a")
    database.up = False
    clock.now += 30
    assert await revocations.is_revoked("a")  # the list read 30 s ago stands
    assert not await revocations.is_revoked("b")
    clock.now += 31
    with pytest.raises(ConnectionRefusedError):
        await revocations.is_revoked("b")
    database.up = True
    clock.now += 5
    assert not await revocations.is_revoked("b")


async def test_no_list_read_yet_is_an_error_not_an_empty_list() -> None:
    database = Database()
    database.up = False
    revocations = RevocationList(database, SETTINGS, Clock())  # type: ignore[arg-type]
    with pytest.raises(ConnectionRefusedError):
        await revocations.is_revoked("a")
