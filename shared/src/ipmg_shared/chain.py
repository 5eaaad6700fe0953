"""Hash-chain verification, pure: fed events in position order from a store, a topic or a
bundle, it names the first position where the record stops being what was appended."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from ipmg_shared.canonical import GENESIS_HASH, NotCanonical
from ipmg_shared.envelope import hash_event_fields

# How far from its place a moved event is looked for when its hash fails at the place it is.
REORDER_WINDOW = 32


class BreakKind(StrEnum):
    CHANGED = "changed"  # the event's content no longer matches its hash
    MISSING = "missing"  # a position is absent
    REORDERED = "reordered"  # a genuine event stands at another position than it was recorded at
    NOT_LINKED = "not_linked"  # prev_hash does not name the previous event's hash
    STREAM_GAP = "stream_gap"  # a stream's versions are not contiguous
    EXTRA = "extra"  # an event that the other record does not have
    DISAGREE = "disagree"  # store and topic hold different events at one position
    CHECKPOINT = "checkpoint"  # a signed checkpoint does not verify or no longer matches


@dataclass(frozen=True)
class ChainBreak:
    position: int
    kind: BreakKind
    detail: str
    # The event found where the record breaks, so a person can look it up.
    event_id: str = ""
    stream_id: str = ""
    event_type: str = ""

    def __str__(self) -> str:
        found = (
            f" (event {self.event_id}, stream {self.stream_id}, {self.event_type})"
            if self.event_id
            else ""
        )
        return f"position {self.position}: {self.kind.value}: {self.detail}{found}"

    def at(self, event: dict[str, Any]) -> ChainBreak:
        """This break, naming the event it was found at."""
        return replace(
            self,
            event_id=str(event.get("event_id", "")),
            stream_id=str(event.get("stream_id", "")),
            event_type=str(event.get("type", "")),
        )


@dataclass
class ChainReport:
    source: str
    events: int = 0
    head_position: int = 0
    head_hash: str = GENESIS_HASH
    first_break: ChainBreak | None = None

    @property
    def ok(self) -> bool:
        return self.first_break is None


@dataclass
class ChainVerifier:
    """Feed it events (as envelope JSON objects) in position order; it stops at the first break."""

    source: str
    report: ChainReport = field(init=False)
    _stream_versions: dict[str, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.report = ChainReport(source=self.source)

    @classmethod
    def resumed(
        cls, source: str, head_position: int, head_hash: str, stream_versions: dict[str, int]
    ) -> ChainVerifier:
        """A verifier that continues after a head verified earlier (its events not counted)."""
        verifier = cls(source)
        verifier.report.head_position = head_position
        verifier.report.head_hash = head_hash
        verifier._stream_versions = dict(stream_versions)
        return verifier

    def stream_version(self, stream_id: str) -> int:
        return self._stream_versions.get(stream_id, 0)

    def feed(self, event: dict[str, Any]) -> bool:
        """Returns False once a break has been found (the rest is not trustworthy)."""
        if self.report.first_break is not None:
            return False
        found = self._check(event)
        if found is not None:
            self.report.first_break = found.at(event)
            return False
        self.report.events += 1
        self.report.head_position = int(event["position"])
        self.report.head_hash = str(event["hash"])
        self._stream_versions[str(event["stream_id"])] = int(event["stream_version"])
        return True

    def feed_all(self, events: Iterable[dict[str, Any]]) -> ChainReport:
        for event in events:
            if not self.feed(event):
                break
        return self.report

    def _check(self, event: dict[str, Any]) -> ChainBreak | None:
        expected_position = self.report.head_position + 1
        position = int(event["position"])
        if position != expected_position:
            return ChainBreak(
                expected_position,
                BreakKind.MISSING,
                f"expected position {expected_position}, next stored is {position}",
            )
        if not _hash_matches(event, position):
            moved_from = _recorded_position(event, position)
            if moved_from is not None:
                return ChainBreak(
                    position,
                    BreakKind.REORDERED,
                    f"the event recorded at position {moved_from} stands at position {position}",
                )
            return ChainBreak(position, BreakKind.CHANGED, "content does not match its hash")
        if event["prev_hash"] != self.report.head_hash:
            return ChainBreak(
                position,
                BreakKind.NOT_LINKED,
                "prev_hash does not name the hash of the event before it",
            )
        stream_id = str(event["stream_id"])
        expected_version = self._stream_versions.get(stream_id, 0) + 1
        if int(event["stream_version"]) != expected_version:
            return ChainBreak(
                position,
                BreakKind.STREAM_GAP,
                f"stream {stream_id} expected version {expected_version}, "
                f"found {event['stream_version']}",
            )
        return None


def hash_is_genuine(event: dict[str, Any]) -> bool:
    """Whether the event's content, at the position it names, hashes to its ``hash``."""
    return _hash_matches(event, int(event["position"]))


def _hash_matches(event: dict[str, Any], position: int) -> bool:
    try:
        return hash_event_fields({**event, "position": position}) == str(event["hash"])
    except NotCanonical:
        return False


def _recorded_position(event: dict[str, Any], position: int) -> int | None:
    for distance in range(1, REORDER_WINDOW + 1):
        for candidate in (position - distance, position + distance):
            if candidate >= 1 and _hash_matches(event, candidate):
                return candidate
    return None
