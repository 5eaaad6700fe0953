"""Audit bundles: export each source's events with a manifest, and verify one offline."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from ipmg_shared.audit import CHECKPOINT_TYPE, CheckpointCheck, SourceAudit
from ipmg_shared.canonical import format_instant
from ipmg_shared.chain import BreakKind, ChainBreak, ChainVerifier
from ipmg_shared.db import create_pool
from ipmg_shared.events import EventRegistry, JsonObject
from ipmg_shared.settings import Settings
from ipmg_shared.store import EventStore

BUNDLE_FORMAT = "ipmg-audit-bundle/1"


class BundleInvalid(Exception):
    """The bundle cannot be read as one (missing file, bad JSON, truncated): one clear line."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


async def export_bundle(
    settings: Settings,
    sources: Iterable[str],
    until: datetime,
    folder: Path,
    public_keys: dict[str, str],
) -> JsonObject:
    """Events recorded up to ``until``, one JSON-lines file per source, and a manifest."""
    (folder / "events").mkdir(parents=True, exist_ok=True)
    manifest: JsonObject = {
        "format": BUNDLE_FORMAT,
        "created_at": format_instant(datetime.now(UTC)),
        "until": format_instant(until),
        "sources": {},
        "checkpoints": [],
        "public_keys": public_keys,
    }
    for source in sources:
        pool = await create_pool(settings.service_dsn(source), settings, max_size=2)
        path = folder / "events" / f"{source}.jsonl"
        report = ChainVerifier(source)
        try:
            with path.open("w", encoding="utf-8") as out:
                store = EventStore(pool, source, EventRegistry())
                async for event in store.iter_json(until=until):
                    out.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")))
                    out.write("\n")
                    report.feed(event)
                    if event["type"] == CHECKPOINT_TYPE:
                        manifest["checkpoints"].append(event["payload"])
        finally:
            await pool.close()
        manifest["sources"][source] = {
            "file": f"events/{source}.jsonl",
            "events": report.report.events,
            "head_position": report.report.head_position,
            "head_hash": report.report.head_hash,
            "sha256": _sha256(path),
        }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(folder: Path) -> JsonObject:
    path = folder / "manifest.json"
    if not path.is_file():
        raise BundleInvalid(f"{folder} is not an audit bundle: manifest.json is missing")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise BundleInvalid(f"{path} is not valid JSON: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleInvalid(f"{path} is not a {BUNDLE_FORMAT} manifest")
    return manifest


def bundle_events(folder: Path, source: str, entry: JsonObject) -> Iterator[JsonObject]:
    path = folder / str(entry.get("file", ""))
    if not path.is_file():
        raise BundleInvalid(f"the bundle lacks {path.name} for {source}")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                event = json.loads(line)
            except ValueError as error:
                raise BundleInvalid(f"{path.name} line {number} is not JSON: {error}") from error
            if not isinstance(event, dict):
                raise BundleInvalid(f"{path.name} line {number} is not an event")
            yield event


def verify_bundle(folder: Path, trusted_keys: dict[str, str] | None = None) -> list[SourceAudit]:
    """Verify a bundle with nothing but its files (and, if given, the keys one trusts)."""
    manifest = read_manifest(folder)
    keys: dict[str, str] = dict(manifest.get("public_keys") or {})
    if trusted_keys is not None:
        untrusted = sorted(set(keys) - set(trusted_keys))
        if untrusted:
            raise BundleInvalid(f"the bundle carries keys that are not trusted: {untrusted}")
        keys = trusted_keys
    audits = []
    for source, entry in sorted((manifest.get("sources") or {}).items()):
        verifier = ChainVerifier(source)
        checkpoints = CheckpointCheck(keys)
        try:
            for event in bundle_events(folder, source, entry):
                checkpoints.feed(event)
                if not verifier.feed(event):
                    break
        except (KeyError, TypeError, ValueError, ValidationError) as error:
            if isinstance(error, BundleInvalid):
                raise
            raise BundleInvalid(f"{source}: an event lacks a field or has a bad one") from error
        audit = SourceAudit(source, verifier.report, checkpoints=len(checkpoints.checkpoints))
        if (broken := checkpoints.first_break()) is not None:
            audit.problems.append(broken)
        if verifier.report.ok:
            digest = _sha256(folder / str(entry["file"]))
            if (
                digest != entry.get("sha256")
                or verifier.report.events != entry.get("events")
                or (verifier.report.head_hash != entry.get("head_hash"))
            ):
                audit.problems.append(
                    ChainBreak(
                        verifier.report.head_position + 1,
                        BreakKind.MISSING,
                        "the file does not match the manifest (truncated or edited)",
                    )
                )
        audits.append(audit)
    return audits
