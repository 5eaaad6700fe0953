"""Answers as of a past instant, bounded: a rate per subject, a few folds at a time, a cache.

An as-of answer folds reporting's whole log up to the instant, which costs far more than a
read of the live copy. So each subject may ask for so many a minute (``limits``' moving
window), at most ``concurrency`` folds run at once, each in a worker thread off the event loop,
and a fold's model is kept per (instant, head of the log): asked again before a new event
arrives, the same answer comes from memory. Identical requests arriving together share one
fold.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from prometheus_client import Counter

from ipmg_reporting.projections import Model

AS_OF_REPLAYS = Counter(
    "ipmg_reporting_as_of_replays_total",
    "As-of answers, by how they were served (folded, cached, shared, rate_limited)",
    ["outcome"],
)

HAND_OVER_EVERY = 20  # events folded between two hand-overs of the GIL (about 6 ms of work)
Head = tuple[tuple[str, int], ...]  # per source, the last position in reporting's log
CacheKey = tuple[datetime, Head]


class AsOfRateLimited(Exception):
    """The subject asked for more as-of answers than its rate allows."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many as-of requests; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class AsOfRateLimit:
    """So many as-of requests a minute per subject, over a moving window."""

    def __init__(self, per_minute: int) -> None:
        self.rate = RateLimitItemPerMinute(per_minute)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, subject: str) -> None:
        if self.limiter.hit(self.rate, subject):
            return
        AS_OF_REPLAYS.labels("rate_limited").inc()
        reset_at = self.limiter.get_window_stats(self.rate, subject).reset_time
        raise AsOfRateLimited(max(1, math.ceil(reset_at - time.time())))


class AsOfReplays:
    """Folds of the log up to an instant: at most ``concurrency`` at once, the last
    ``cache_size`` kept."""

    def __init__(self, *, concurrency: int, cache_size: int) -> None:
        self.cache_size = cache_size
        self._slots = asyncio.Semaphore(concurrency)
        self._threads = ThreadPoolExecutor(concurrency, thread_name_prefix="as-of-fold")
        self._cache: OrderedDict[CacheKey, Model] = OrderedDict()
        self._folding: dict[CacheKey, asyncio.Future[Model]] = {}

    async def model(
        self,
        as_of: datetime,
        head: Head,
        read_log: Callable[[], Awaitable[Sequence[str]]],
    ) -> Model:
        """The model as of ``as_of``; ``read_log`` gives the envelopes recorded up to it."""
        key = (as_of, head)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            AS_OF_REPLAYS.labels("cached").inc()
            return cached
        folding = self._folding.get(key)
        if folding is not None:
            AS_OF_REPLAYS.labels("shared").inc()
            return await asyncio.shield(folding)
        task = asyncio.ensure_future(self._fold(key, read_log))
        self._folding[key] = task
        task.add_done_callback(lambda _: self._folding.pop(key, None))
        AS_OF_REPLAYS.labels("folded").inc()
        # Shielded: a caller who leaves does not cancel the fold others may be waiting for.
        return await asyncio.shield(task)

    async def _fold(self, key: CacheKey, read_log: Callable[[], Awaitable[Sequence[str]]]) -> Model:
        async with self._slots:
            envelopes = await read_log()
            loop = asyncio.get_running_loop()
            model = await loop.run_in_executor(self._threads, fold, envelopes)
        if self.cache_size > 0:
            self._cache[key] = model
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return model

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)


def fold(envelopes: Sequence[str], hand_over_every: int = HAND_OVER_EVERY) -> Model:
    """The projection code over envelopes in each source's position order."""
    model = Model()
    for count, envelope in enumerate(envelopes, 1):
        model.apply_json(envelope)
        if hand_over_every and count % hand_over_every == 0:
            # Hands the GIL over: a thread that only waits for it can wait a whole switch
            # interval per turn, and the event loop needs many turns to answer a request.
            time.sleep(0)
    return model
