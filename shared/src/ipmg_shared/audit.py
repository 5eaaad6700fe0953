"""Audit of a live system: prove that each write source's record is what was appended, in
PostgreSQL and on Kafka, and that its signed checkpoints still hold (bundles: ``bundles``)."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import uuid4

from asyncpg import Pool

from ipmg_shared.actors import Actor
from ipmg_shared.chain import (
    BreakKind,
    ChainBreak,
    ChainReport,
    ChainVerifier,
    hash_is_genuine,
)
from ipmg_shared.checkpoints import (
    CHECKPOINT_STREAM_PREFIX,
    ChainCheckpointSigned,
    Keyring,
    sign_checkpoint,
    signature_is_valid,
)
from ipmg_shared.db import create_pool
from ipmg_shared.events import EventRegistry, JsonObject
from ipmg_shared.kafka_reader import read_topic
from ipmg_shared.settings import Settings
from ipmg_shared.store import AppendResult, EventStore, NewEvent

CHECKPOINT_TYPE = ChainCheckpointSigned.event_type


@dataclass
class CheckpointCheck:
    """Checkpoints are verified against the record they were fed alongside."""

    public_keys: dict[str, str]
    hashes: dict[int, str] = field(default_factory=dict)
    checkpoints: list[tuple[int, ChainCheckpointSigned]] = field(default_factory=list)

    def feed(self, event: JsonObject) -> None:
        self.hashes[int(event["position"])] = str(event["hash"])
        if event["type"] == CHECKPOINT_TYPE:
            self.checkpoints.append(
                (int(event["position"]), ChainCheckpointSigned.model_validate(event["payload"]))
            )

    def first_break(self) -> ChainBreak | None:
        for position, checkpoint in self.checkpoints:
            if not signature_is_valid(checkpoint, self.public_keys):
                return ChainBreak(
                    position,
                    BreakKind.CHECKPOINT,
                    f"checkpoint signature does not verify with key {checkpoint.key_id}",
                )
            if checkpoint.position and self.hashes.get(checkpoint.position) != checkpoint.hash:
                return ChainBreak(
                    checkpoint.position,
                    BreakKind.CHECKPOINT,
                    f"the signed checkpoint at position {position} names another hash for "
                    f"position {checkpoint.position}: the chain was rewritten",
                )
        return None


@dataclass
class SourceAudit:
    source: str
    store: ChainReport
    topic: ChainReport | None = None
    problems: list[ChainBreak] = field(default_factory=list)
    unpublished: int = 0
    duplicates_on_topic: int = 0
    checkpoints: int = 0
    newer_than_cut: int = 0  # on the topic beyond the store head fixed at the start: not judged

    @property
    def first_problem(self) -> ChainBreak | None:
        found = [b for b in [self.store.first_break, *self.problems] if b is not None]
        if self.topic is not None and self.topic.first_break is not None:
            found.append(self.topic.first_break)
        return min(found, key=lambda b: b.position) if found else None

    @property
    def ok(self) -> bool:
        return self.first_problem is None


async def audit_source(
    settings: Settings, source: str, public_keys: dict[str, str], *, with_topic: bool = True
) -> SourceAudit:
    """Verify ``source``'s store and (independently) its topic, then compare them.

    The store's head is fixed first (the cut); the store and the topic are judged up to it, so
    events appended and published while the audit runs are counted as newer, never as a break.
    """
    pool = await create_pool(settings.auditor_dsn(source), settings, max_size=2)
    try:
        # One snapshot: what the relay had published can never be beyond the head.
        cut = await pool.fetchrow(
            "SELECT (SELECT coalesce(max(position), 0) FROM events) AS head, "
            "(SELECT coalesce(max(published_position), 0) FROM relay_progress) AS published"
        )
        assert cut is not None
        store = EventStore(pool, source, EventRegistry())
        verifier = ChainVerifier(source)
        checkpoints = CheckpointCheck(public_keys)
        async for event in store.iter_json():
            if int(event["position"]) > cut["head"]:
                break
            checkpoints.feed(event)
            if not verifier.feed(event):
                break
        audit = SourceAudit(source, verifier.report)
        audit.checkpoints = len(checkpoints.checkpoints)
        if (broken := checkpoints.first_break()) is not None:
            audit.problems.append(broken)
        if with_topic:
            newer = await _audit_topic(
                settings, audit, checkpoints.hashes, int(cut["published"]), int(cut["head"])
            )
            await _check_newer(pool, audit, newer)
    finally:
        await pool.close()
    return audit


async def _check_newer(pool: Pool, audit: SourceAudit, newer: dict[int, str]) -> None:
    """A record beyond the cut was stored before it was published, so the store has it now:
    one that it lacks, or holds otherwise, is a break however late it came."""
    rows = await pool.fetch(
        "SELECT position, hash FROM events WHERE position = ANY($1::bigint[])", list(newer)
    )
    stored = {int(row["position"]): str(row["hash"]) for row in rows}
    for position in sorted(newer):
        if position not in stored:
            audit.problems.append(
                ChainBreak(position, BreakKind.EXTRA, "on the topic but not in the store")
            )
            return
        if stored[position] != newer[position]:
            audit.problems.append(
                ChainBreak(position, BreakKind.DISAGREE, "the store and the topic differ here")
            )
            return
    audit.newer_than_cut = len(newer)


async def _audit_topic(
    settings: Settings, audit: SourceAudit, store_hashes: dict[int, str], published: int, cut: int
) -> dict[int, str]:
    """Judges the topic up to ``cut``; returns the hash of each record beyond it."""
    on_topic: dict[int, JsonObject] = {}
    newer: dict[int, str] = {}
    async for record in read_topic(settings, settings.topics.events(audit.source)):
        try:
            event = json.loads(record.value or b"")
            position = int(event["position"])
        except (ValueError, KeyError, TypeError):
            audit.problems.append(
                ChainBreak(0, BreakKind.EXTRA, f"topic offset {record.offset}: not an event")
            )
            continue
        if position > cut:
            if not hash_is_genuine(event):
                audit.problems.append(
                    ChainBreak(position, BreakKind.CHANGED, "content does not match its hash")
                )
            elif newer.setdefault(position, str(event.get("hash"))) != event.get("hash"):
                audit.problems.append(
                    ChainBreak(position, BreakKind.DISAGREE, "two different events on the topic")
                )
            continue
        earlier = on_topic.get(position)
        if earlier is None:
            on_topic[position] = event
        elif earlier == event:
            audit.duplicates_on_topic += 1  # a re-publish after an unknown outcome: harmless
        else:
            audit.problems.append(
                ChainBreak(position, BreakKind.DISAGREE, "two different events on the topic")
            )
    # Only the run from position 1 is chained: with several partitions a record can be on the
    # topic before one it follows; what is published must be there (the check below).
    contiguous = itertools.takewhile(lambda p: p in on_topic, itertools.count(1))
    audit.topic = ChainVerifier(audit.source).feed_all(on_topic[p] for p in contiguous)
    store_head = audit.store.head_position if audit.store.ok else max(store_hashes, default=0)
    for position in sorted(on_topic):
        stored = store_hashes.get(position)
        if stored is None:
            audit.problems.append(
                ChainBreak(position, BreakKind.EXTRA, "on the topic but not in the store")
            )
            break
        if stored != on_topic[position]["hash"]:
            audit.problems.append(
                ChainBreak(position, BreakKind.DISAGREE, "the store and the topic differ here")
            )
            break
    for position in range(1, min(published, store_head) + 1):
        if position not in on_topic:
            audit.problems.append(
                ChainBreak(position, BreakKind.MISSING, "published but not on the topic")
            )
            break
    audit.unpublished = max(store_head - max(on_topic, default=0), 0)
    return newer


async def write_checkpoint(store: EventStore, keyring: Keyring) -> AppendResult | None:
    """Sign the store's current head and append the checkpoint; None when the store is empty."""
    position, head_hash = await store.head()
    if position == 0:
        return None
    now = datetime.now(UTC)
    checkpoint = sign_checkpoint(store.source, position, head_hash, now, keyring)
    return await store.append(
        f"{CHECKPOINT_STREAM_PREFIX}{store.source}",
        None,
        [NewEvent(checkpoint, occurred_at=now)],
        actor=Actor.service(store.source),
        correlation_id=uuid4(),
    )
