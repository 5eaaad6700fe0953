"""Commands on one stream take turns within a process; other streams do not wait."""

from __future__ import annotations

import asyncio

from ipmg_shared.stream_turns import StreamTurns


async def test_one_stream_takes_turns_and_forgets_its_lock() -> None:
    turns = StreamTurns()
    inside: list[str] = []
    overlaps: list[int] = []

    async def command(stream_id: str) -> None:
        async with turns.turn(stream_id):
            inside.append(stream_id)
            overlaps.append(inside.count(stream_id))
            await asyncio.sleep(0.01)
            inside.remove(stream_id)

    await asyncio.gather(*(command("resolution-1") for _ in range(5)), command("resolution-2"))
    assert max(overlaps) == 1
    assert len(turns) == 0


async def test_another_stream_does_not_wait() -> None:
    turns = StreamTurns()
    async with turns.turn("resolution-1"):
        await asyncio.wait_for(_enter(turns, "resolution-2"), timeout=1)


async def _enter(turns: StreamTurns, stream_id: str) -> None:
    async with turns.turn(stream_id):
        pass
