"""What ``ipmg audit watch`` has verified, kept in a SQLite file of its own: per source the
verified head, the next topic offset of each partition, each stream's last version, the hashes
of the latest positions (for checkpoints and re-published copies) and the first break found.

Each batch of verified records is saved in one transaction, so a process killed at any moment
resumes from a head it had verified, and a break it reported is not reported again."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from ipmg_shared.canonical import GENESIS_HASH
from ipmg_shared.chain import BreakKind, ChainBreak

SCHEMA = """
CREATE TABLE IF NOT EXISTS heads (
    source TEXT PRIMARY KEY, topic TEXT NOT NULL, position INTEGER NOT NULL,
    hash TEXT NOT NULL, verified_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS offsets (
    source TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (source, partition));
CREATE TABLE IF NOT EXISTS stream_versions (
    source TEXT NOT NULL, stream_id TEXT NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (source, stream_id));
CREATE TABLE IF NOT EXISTS recent_hashes (
    source TEXT NOT NULL, position INTEGER NOT NULL, hash TEXT NOT NULL,
    PRIMARY KEY (source, position));
CREATE TABLE IF NOT EXISTS breaks (
    source TEXT PRIMARY KEY, position INTEGER NOT NULL, kind TEXT NOT NULL,
    detail TEXT NOT NULL, event_id TEXT, stream_id TEXT, found_at REAL NOT NULL);
"""


@dataclass(frozen=True)
class WatchBreak:
    """A break, with what an operator looks up first: the event and its stream."""

    source: str
    chain_break: ChainBreak
    event_id: str | None = None
    stream_id: str | None = None

    def __str__(self) -> str:
        where = ", ".join(
            f"{name} {value}"
            for name, value in (("event", self.event_id), ("stream", self.stream_id))
            if value
        )
        return f"{self.source}: {self.chain_break}" + (f" ({where})" if where else "")


@dataclass
class SavedHead:
    """One source as last saved; a fresh one starts at the genesis, offsets at the beginning."""

    source: str
    topic: str
    position: int = 0
    hash: str = GENESIS_HASH
    verified_at: float = 0.0
    offsets: dict[int, int] = field(default_factory=dict)
    stream_versions: dict[str, int] = field(default_factory=dict)
    recent_hashes: dict[int, str] = field(default_factory=dict)
    found: WatchBreak | None = None


class WatchState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        # WAL: a commit is one append and an fsync; a kill -9 keeps every committed batch.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def load(self, source: str, topic: str) -> SavedHead:
        db = self._db
        row = db.execute(
            "SELECT topic, position, hash, verified_at FROM heads WHERE source = ?", (source,)
        ).fetchone()
        if row is None:
            return SavedHead(source, topic)
        if row[0] != topic:
            raise ValueError(
                f"the watch state {self.path} follows {row[0]}, not {topic}: use another file"
            )
        saved = SavedHead(source, topic, row[1], row[2], row[3])
        saved.offsets = dict(
            db.execute("SELECT partition, next_offset FROM offsets WHERE source = ?", (source,))
        )
        saved.stream_versions = dict(
            db.execute("SELECT stream_id, version FROM stream_versions WHERE source = ?", (source,))
        )
        saved.recent_hashes = dict(
            db.execute(
                "SELECT position, hash FROM recent_hashes WHERE source = ? ORDER BY position",
                (source,),
            )
        )
        found = db.execute(
            "SELECT position, kind, detail, event_id, stream_id FROM breaks WHERE source = ?",
            (source,),
        ).fetchone()
        if found is not None:
            saved.found = WatchBreak(
                source, ChainBreak(found[0], BreakKind(found[1]), found[2]), found[3], found[4]
            )
        return saved

    def save(
        self,
        saved: SavedHead,
        streams: dict[str, int],
        new_hashes: dict[int, str],
        keep_hashes_after: int,
    ) -> None:
        """The head, offsets and break as they are; ``streams`` and ``new_hashes``: what
        changed since the last save; hashes at or before ``keep_hashes_after`` are dropped."""
        source = saved.source
        db = self._db
        db.execute("BEGIN")
        try:
            db.execute(
                "INSERT INTO heads VALUES (?, ?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET "
                "position = excluded.position, hash = excluded.hash, "
                "verified_at = excluded.verified_at",
                (source, saved.topic, saved.position, saved.hash, saved.verified_at),
            )
            db.executemany(
                "INSERT OR REPLACE INTO offsets VALUES (?, ?, ?)",
                [(source, partition, offset) for partition, offset in saved.offsets.items()],
            )
            db.executemany(
                "INSERT OR REPLACE INTO stream_versions VALUES (?, ?, ?)",
                [(source, stream, version) for stream, version in streams.items()],
            )
            db.executemany(
                "INSERT OR REPLACE INTO recent_hashes VALUES (?, ?, ?)",
                [(source, position, digest) for position, digest in new_hashes.items()],
            )
            db.execute(
                "DELETE FROM recent_hashes WHERE source = ? AND position <= ?",
                (source, keep_hashes_after),
            )
            if saved.found is not None:
                found = saved.found
                db.execute(
                    "INSERT OR IGNORE INTO breaks VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        source,
                        found.chain_break.position,
                        found.chain_break.kind.value,
                        found.chain_break.detail,
                        found.event_id,
                        found.stream_id,
                        time.time(),
                    ),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
