"""The baseline the project's design follows: the ``eventsourcing`` library's application.

The same checklist as ``bench/checklist.py``, written the library's way (an ``Aggregate`` whose
command method triggers the events, saved with ``Application.save``) and stored by its
PostgreSQL recorder in a database of its own on the same server. The library is synchronous,
so concurrent writers are threads, as its documentation has them.
"""

# The `bench` dependency group is absent after a plain `uv sync` (as `make lint` runs it), so
# this module must type-check with or without the library installed: where it is missing its
# names are Any, which strict mode would refuse as a base class and as a decorator.
# mypy: disable-error-code="misc, untyped-decorator, no-any-return"

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit
from uuid import UUID

from eventsourcing.application import Application  # type: ignore[import-not-found, unused-ignore]
from eventsourcing.domain import Aggregate, event  # type: ignore[import-not-found, unused-ignore]

from bench.checklist import NOTE
from bench.measure import Stopwatch, Timing
from ipmg_shared.domain import CommandRefused

NAME = "eventsourcing library"


class Checklist(Aggregate):
    @event("Opened")
    def __init__(self, title: str) -> None:
        self.title = title
        self.ticked: set[str] = set()

    def tick(self, items: Sequence[str], note: str) -> None:
        if self.ticked.intersection(items):
            raise CommandRefused("checklist.tick.once", "an item is ticked once")
        for item in items:
            self.item_ticked(item=item, note=note)

    @event("ItemTicked")
    def item_ticked(self, item: str, note: str) -> None:
        self.ticked.add(item)


class Checklists(Application[UUID]):
    def open(self, count: int) -> list[UUID]:
        checklists = [Checklist(title="quarterly follow-up") for _ in range(count)]
        for start in range(0, count, 100):
            self.save(*checklists[start : start + 100])
        return [checklist.id for checklist in checklists]

    def tick(self, checklist_id: UUID, items: Sequence[str]) -> None:
        checklist: Checklist = self.repository.get(checklist_id)
        checklist.tick(items, NOTE)
        self.save(checklist)


def library_env(dsn: str, pool_size: int) -> dict[str, str]:
    url = urlsplit(dsn)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": url.path.lstrip("/"),
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": url.username or "",
        "POSTGRES_PASSWORD": url.password or "",
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": "0",
    }


class LibraryContender:
    """The append benchmark's view of the library: open checklists, then time ticking them."""

    name = NAME

    def __init__(self, dsn: str, pool_size: int) -> None:
        self.app = Checklists(env=library_env(dsn, pool_size))

    async def prepare(self, count: int) -> list[UUID]:
        return await asyncio.to_thread(self.app.open, count)

    async def run(self, checklists: list[UUID], items: tuple[str, ...], writers: int) -> Timing:
        return await asyncio.to_thread(self._run, checklists, items, writers)

    def _run(self, checklists: list[UUID], items: tuple[str, ...], writers: int) -> Timing:
        def writer(share: list[UUID]) -> None:
            for checklist_id in share:
                self.app.tick(checklist_id, items)

        with ThreadPoolExecutor(writers) as threads:
            watch = Stopwatch()
            done = [threads.submit(writer, checklists[n::writers]) for n in range(writers)]
            for future in done:
                future.result()
            return watch.stop()

    async def close(self) -> None:
        self.app.close()
