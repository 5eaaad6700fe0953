"""Following one source's topic record by record, with the audit's own checks: each record is
fed to the ``ChainVerifier`` (hash, link, position, stream version) in position order and its
signed checkpoints to ``CheckpointCheck``, from a head verified earlier. No I/O here."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from ipmg_shared.audit import CHECKPOINT_TYPE, CheckpointCheck
from ipmg_shared.audit_watch_state import SavedHead, WatchBreak
from ipmg_shared.chain import BreakKind, ChainBreak, ChainVerifier, hash_is_genuine
from ipmg_shared.events import JsonObject

# Positions whose hashes are kept: a checkpoint names a head a few positions back, and a relay
# re-publishes at most a batch it had sent.
RECENT_HASHES = 10_000


@dataclass
class Pending:
    event: JsonObject
    partition: int
    offset: int


@dataclass
class TopicFollower:
    """One source's topic: ``take`` each record as read; ``found`` is the first break."""

    saved: SavedHead
    public_keys: Callable[[], dict[str, str]]
    verifier: ChainVerifier = field(init=False)
    found: WatchBreak | None = field(init=False)
    events_verified: int = 0
    # Since the last save: for the state file.
    changed_streams: dict[str, int] = field(default_factory=dict)
    new_hashes: dict[int, str] = field(default_factory=dict)
    # Records beyond the next position (another partition's may come first), and copies of a
    # verified position whose hash is no longer kept: the store is asked about those.
    pending: dict[int, Pending] = field(default_factory=dict)
    unchecked_copies: dict[int, JsonObject] = field(default_factory=dict)
    _next_offsets: dict[int, int] = field(default_factory=dict)
    _keys: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        saved = self.saved
        self.verifier = ChainVerifier.resumed(
            saved.source, saved.position, saved.hash, saved.stream_versions
        )
        self.found = saved.found
        self._next_offsets = dict(saved.offsets)
        self._keys = self.public_keys()

    @property
    def source(self) -> str:
        return self.saved.source

    @property
    def head(self) -> tuple[int, str]:
        return self.verifier.report.head_position, self.verifier.report.head_hash

    def take(self, value: bytes | None, partition: int, offset: int) -> WatchBreak | None:
        """Check one record; returns the break it shows, once (then the source stops)."""
        if self.found is not None:
            return None
        self._next_offsets[partition] = offset + 1
        try:
            event = json.loads(value or b"")
            position = int(event["position"])
        except (ValueError, KeyError, TypeError):
            return self._stop(
                ChainBreak(
                    0, BreakKind.EXTRA, f"partition {partition} offset {offset}: not an event"
                )
            )
        head, _ = self.head
        if position <= head:
            return self._copy_of_verified(position, event)
        earlier = self.pending.get(position)
        if earlier is not None and earlier.event.get("hash") != event.get("hash"):
            return self._stop(
                ChainBreak(position, BreakKind.DISAGREE, "two different events on the topic"),
                event,
            )
        self.pending.setdefault(position, Pending(event, partition, offset))
        while (ready := self.pending.pop(self.head[0] + 1, None)) is not None:
            if (found := self._verify(ready.event)) is not None:
                return found
        return None

    def _copy_of_verified(self, position: int, event: JsonObject) -> WatchBreak | None:
        """A re-publish (after an unknown outcome) is harmless only if it is the same event."""
        known = self.saved.recent_hashes.get(position)
        if not hash_is_genuine(event):
            return self._stop(
                ChainBreak(position, BreakKind.CHANGED, "content does not match its hash"), event
            )
        if known is None:
            self.unchecked_copies[position] = event
            return None
        if known != event.get("hash"):
            return self._stop(
                ChainBreak(position, BreakKind.DISAGREE, "two different events on the topic"),
                event,
            )
        return None  # a re-publish after an unknown outcome: harmless

    def _verify(self, event: JsonObject) -> WatchBreak | None:
        if not self.verifier.feed(event):
            broken = self.verifier.report.first_break
            assert broken is not None
            return self._stop(broken, event)
        position, digest = self.head
        self._remember(position, digest)
        self.changed_streams[str(event["stream_id"])] = int(event["stream_version"])
        self.events_verified += 1
        if event["type"] == CHECKPOINT_TYPE:
            return self._check_signed(event)
        return None

    def _check_signed(self, event: JsonObject) -> WatchBreak | None:
        check = CheckpointCheck(self._keys, self.saved.recent_hashes)
        check.feed(event)
        broken = check.first_break()
        if broken is not None and broken.detail.startswith("checkpoint signature"):
            self._keys = self.public_keys()  # a key rotated in since the start
            check.public_keys = self._keys
            broken = check.first_break()
        return self._stop(broken, event) if broken is not None else None

    def _remember(self, position: int, digest: str) -> None:
        recent = self.saved.recent_hashes
        recent[position] = digest
        self.new_hashes[position] = digest
        while len(recent) > RECENT_HASHES:
            del recent[next(iter(recent))]

    def _stop(self, broken: ChainBreak, event: JsonObject | None = None) -> WatchBreak:
        self.found = WatchBreak(
            self.source,
            broken,
            str(event.get("event_id")) if event else None,
            str(event.get("stream_id")) if event else None,
        )
        return self.found

    def stop_at(
        self, broken: ChainBreak, event_id: str | None, stream_id: str | None
    ) -> WatchBreak:
        """A break found elsewhere (the store): this source is not followed further."""
        self.found = WatchBreak(self.source, broken, event_id, stream_id)
        return self.found

    def read_up_to(self, partition: int) -> int:
        """The offset after the last record read from ``partition`` (pending ones included)."""
        return self._next_offsets.get(partition, 0)

    def next_offsets(self) -> dict[int, int]:
        """Where to read from again: a partition's offset stays before its pending records."""
        offsets = dict(self._next_offsets)
        for waiting in self.pending.values():
            offsets[waiting.partition] = min(offsets[waiting.partition], waiting.offset)
        return offsets

    def to_save(self) -> SavedHead:
        saved = self.saved
        saved.position, saved.hash = self.head
        saved.offsets = self.next_offsets()
        saved.found = self.found
        return saved

    def saved_changes(self) -> tuple[dict[str, int], dict[int, str], int]:
        """What changed since the last save, then forgotten: streams, hashes, hashes kept after."""
        streams, hashes = self.changed_streams, self.new_hashes
        self.changed_streams, self.new_hashes = {}, {}
        return streams, hashes, max(self.head[0] - RECENT_HASHES, 0)
