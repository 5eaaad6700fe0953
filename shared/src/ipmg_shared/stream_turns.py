"""One command at a time per stream within a process, so concurrent commands on one stream
take turns instead of failing each other's optimistic version check.

Another process (a second replica) can still move the stream between a load and an append;
the application layer retries that conflict against the fresh state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class StreamTurns:
    """A lock per stream id, kept only while some command holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, int] = {}

    @asynccontextmanager
    async def turn(self, stream_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(stream_id, asyncio.Lock())
        self._waiting[stream_id] = self._waiting.get(stream_id, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._waiting[stream_id] -= 1
            if self._waiting[stream_id] == 0:
                del self._waiting[stream_id]
                del self._locks[stream_id]

    def __len__(self) -> int:
        return len(self._locks)
