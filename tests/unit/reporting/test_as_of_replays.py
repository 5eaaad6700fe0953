"""As-of folds bounded in memory: the cache per (instant, head), one fold per key at a time,
a cap on folds at once, and the per-subject rate."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from ipmg_reporting.as_of_replays import AsOfRateLimit, AsOfRateLimited, AsOfReplays, fold
from tests.unit.reporting.history import HistoryWriter, envelopes_of

AS_OF = datetime(2016, 3, 31, tzinfo=UTC)
HEAD = (("meetings", 10), ("resolutions", 20))


class CountingLog:
    """A log reader that counts its reads and how many overlap."""

    def __init__(self, envelopes: Sequence[str] = (), pause_s: float = 0.0) -> None:
        self.envelopes = list(envelopes)
        self.pause_s = pause_s
        self.reads = 0
        self.running = 0
        self.most_at_once = 0

    async def __call__(self) -> Sequence[str]:
        self.reads += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(self.pause_s)
            return self.envelopes
        finally:
            self.running -= 1


def story_envelopes() -> list[str]:
    writer = HistoryWriter(seed=3)
    return [envelope.model_dump_json() for envelope in envelopes_of(writer.story())]


async def test_the_same_instant_and_head_are_folded_once() -> None:
    replays = AsOfReplays(concurrency=2, cache_size=4)
    log = CountingLog(story_envelopes())
    first = await replays.model(AS_OF, HEAD, log)
    again = await replays.model(AS_OF, HEAD, log)
    assert log.reads == 1
    assert again is first
    assert first.documents == fold(log.envelopes).documents
    assert first.document_count > 0


async def test_a_new_event_in_the_log_is_folded_again() -> None:
    replays = AsOfReplays(concurrency=2, cache_size=4)
    log = CountingLog()
    await replays.model(AS_OF, HEAD, log)
    await replays.model(AS_OF, (("meetings", 11), ("resolutions", 20)), log)
    await replays.model(AS_OF + timedelta(seconds=1), HEAD, log)
    assert log.reads == 3


async def test_the_cache_keeps_only_the_most_recently_used() -> None:
    replays = AsOfReplays(concurrency=2, cache_size=2)
    log = CountingLog()
    instants = [AS_OF + timedelta(days=day) for day in range(3)]
    await replays.model(instants[0], HEAD, log)
    await replays.model(instants[1], HEAD, log)
    await replays.model(instants[0], HEAD, log)  # used again: the second is now the oldest
    await replays.model(instants[2], HEAD, log)  # evicts the second
    assert log.reads == 3
    await replays.model(instants[0], HEAD, log)
    assert log.reads == 3
    await replays.model(instants[1], HEAD, log)
    assert log.reads == 4


async def test_requests_arriving_together_share_one_fold() -> None:
    replays = AsOfReplays(concurrency=2, cache_size=0)
    log = CountingLog(pause_s=0.05)
    models = await asyncio.gather(*(replays.model(AS_OF, HEAD, log) for _ in range(10)))
    assert log.reads == 1
    assert all(model is models[0] for model in models)


async def test_no_more_folds_run_at_once_than_the_limit() -> None:
    replays = AsOfReplays(concurrency=3, cache_size=0)
    log = CountingLog(pause_s=0.02)
    instants = [AS_OF + timedelta(minutes=minute) for minute in range(20)]
    await asyncio.gather(*(replays.model(instant, HEAD, log) for instant in instants))
    assert log.reads == 20
    assert log.most_at_once == 3


async def test_a_caller_who_leaves_does_not_cancel_the_fold_of_the_others() -> None:
    replays = AsOfReplays(concurrency=1, cache_size=1)
    log = CountingLog(pause_s=0.05)
    leaving = asyncio.ensure_future(replays.model(AS_OF, HEAD, log))
    staying = asyncio.ensure_future(replays.model(AS_OF, HEAD, log))
    await asyncio.sleep(0.01)
    leaving.cancel()
    await staying
    assert log.reads == 1


def test_a_subject_over_its_rate_is_refused_with_when_to_retry() -> None:
    limit = AsOfRateLimit(per_minute=3)
    for _ in range(3):
        limit.check("busy@ncsw.gov.pk")
    with pytest.raises(AsOfRateLimited) as refused:
        limit.check("busy@ncsw.gov.pk")
    assert 1 <= refused.value.retry_after_s <= 60
    limit.check("other@ncsw.gov.pk")  # another subject has its own allowance
