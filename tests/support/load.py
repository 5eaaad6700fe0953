"""A steady load of valid commands, retried with the same Idempotency-Key until accepted, so
that every command a client started is accepted exactly once however the system misbehaves."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import httpx

RETRYABLE = {502, 503, 504}


@dataclass
class LoadReport:
    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key -> meeting id
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    unavailable_without_retry_after: int = 0
    abandoned: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(
            count
            for status, count in self.statuses.items()
            if status >= 500 and status not in RETRYABLE
        )

    def figures(self) -> dict[str, int]:
        return {
            "commands_accepted": len(self.accepted),
            "responses_503": self.statuses[503],
            "transport_errors": self.transport_errors,
            "responses_500": self.server_errors,
            "abandoned": len(self.abandoned),
        }


class MeetingLoad:
    """Clients scheduling meetings at a steady pace until stopped, then draining retries."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        *,
        clients: int = 4,
        pause_s: float = 0.05,
        drain_s: float = 60.0,
        year: int = 2018,  # of the meetings: past ones are not notified, future ones are
    ) -> None:
        self.url = url
        self.headers = headers
        self.clients = clients
        self.pause_s = pause_s
        self.drain_s = drain_s
        self.year = year
        self.report = LoadReport()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> MeetingLoad:
        self._tasks = [asyncio.create_task(self._client(n)) for n in range(self.clients)]
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """No new commands; wait for the started ones to be accepted (or the drain to end)."""
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _client(self, number: int) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            sequence = 0
            while not self._stop.is_set():
                sequence += 1
                await self._one(client, f"load-{number}-{sequence}", sequence)
                await asyncio.sleep(self.pause_s)

    async def _one(self, client: httpx.AsyncClient, key: str, sequence: int) -> None:
        body = {
            "scheduled_for": f"{self.year}-{1 + sequence % 12:02d}-15",
            "host_unit": "punjab",
            "venue": f"Lahore {key}",
            # Many meetings a quarter: called as extraordinary, outside the rotation.
            "extraordinary": True,
            "reason": "Load",
        }
        deadline: float | None = None
        while True:
            try:
                response = await client.post(
                    f"{self.url}/meetings",
                    json=body,
                    headers={**self.headers, "Idempotency-Key": key},
                )
            except httpx.TransportError:
                self.report.transport_errors += 1
            else:
                self.report.statuses[response.status_code] += 1
                if response.status_code == 201:
                    self.report.accepted[key] = str(response.json()["id"])
                    return
                if response.status_code == 503 and "Retry-After" not in response.headers:
                    self.report.unavailable_without_retry_after += 1
                if response.status_code not in RETRYABLE:
                    return  # counted; the test decides whether it is acceptable
            if self._stop.is_set():
                deadline = deadline or asyncio.get_running_loop().time() + self.drain_s
                if asyncio.get_running_loop().time() > deadline:
                    self.report.abandoned.append(key)
                    return
            await asyncio.sleep(0.2)
