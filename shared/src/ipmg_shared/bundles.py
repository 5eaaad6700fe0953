"""Audit bundles: export each source's events with a manifest and a head signed at export,
and verify one offline against the keys the auditor trusts."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from pydantic import ValidationError

from ipmg_shared.audit import CHECKPOINT_TYPE, SourceAudit
from ipmg_shared.canonical import GENESIS_HASH, format_instant
from ipmg_shared.chain import BreakKind, ChainBreak, ChainVerifier
from ipmg_shared.checkpoints import (
    ChainCheckpointSigned,
    Keyring,
    sign_checkpoint,
    signature_is_valid,
)
from ipmg_shared.db import create_pool
from ipmg_shared.events import EventRegistry, JsonObject
from ipmg_shared.key_list import TrustedKeys
from ipmg_shared.settings import Settings
from ipmg_shared.store import EventStore

BUNDLE_FORMAT = "ipmg-audit-bundle/2"
# Bundles made before heads were signed at export still read; their tail counts as unsigned.
READABLE_FORMATS = ("ipmg-audit-bundle/1", BUNDLE_FORMAT)


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
    keyring: Keyring,
) -> JsonObject:
    """Events recorded up to ``until``, one JSON-lines file per source, and a manifest with
    each source's head signed now by its own key."""
    sources = list(sources)
    for source in sources:
        keyring.signing_key(source)  # no key, no bundle: said before anything is written
    (folder / "events").mkdir(parents=True, exist_ok=True)
    sources_of_keys = keyring.sources_of_keys()
    manifest: JsonObject = {
        "format": BUNDLE_FORMAT,
        "created_at": format_instant(datetime.now(UTC)),
        "until": format_instant(until),
        "sources": {},
        "checkpoints": [],
        "public_keys": {
            key_id: {"source": sources_of_keys[key_id], "public_key": pem}
            for key_id, pem in keyring.public_keys().items()
        },
    }
    for source in sources:
        pool = await create_pool(settings.auditor_dsn(source), settings, max_size=2)
        path = folder / "events" / f"{source}.jsonl"
        written = ChainVerifier(source)
        try:
            store = EventStore(pool, source, EventRegistry())
            # The cut: the head as it stands now; what is appended while we read is not ours.
            head_position, _ = await store.head()
            with path.open("w", encoding="utf-8") as out:
                async for event in store.iter_json(until=until):
                    position = int(event["position"])
                    if position > head_position or position != written.report.head_position + 1:
                        break  # past the cut, or past the last event recorded by ``until``
                    out.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")))
                    out.write("\n")
                    written.feed(event)
                    if event["type"] == CHECKPOINT_TYPE:
                        manifest["checkpoints"].append(event["payload"])
        finally:
            await pool.close()
        cut = written.report
        signed = sign_checkpoint(
            source, cut.head_position, cut.head_hash, datetime.now(UTC), keyring
        )
        manifest["sources"][source] = {
            "file": f"events/{source}.jsonl",
            "events": cut.events,
            "head_position": cut.head_position,
            "head_hash": cut.head_hash,
            "sha256": _sha256(path),
            "signed_head": signed.model_dump(mode="json"),
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
    if not isinstance(manifest, dict) or manifest.get("format") not in READABLE_FORMATS:
        raise BundleInvalid(f"{path} is not a {BUNDLE_FORMAT} manifest")
    return manifest


def bundle_file(folder: Path, source: str, entry: JsonObject) -> Path:
    """The events file the manifest names for ``source``, refused unless inside the bundle."""
    name = entry.get("file") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not name:
        raise BundleInvalid(f"the manifest names no events file for {source}")
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts or "\\" in name or ":" in name:
        raise BundleInvalid(
            f"the manifest names {name!r} for {source}, outside the bundle folder: refused"
        )
    path = folder / relative
    if not path.resolve().is_relative_to(folder.resolve()):  # a link pointing out
        raise BundleInvalid(
            f"the manifest names {name!r} for {source}, which leads outside the bundle: refused"
        )
    return path


def bundle_events(folder: Path, source: str, entry: JsonObject) -> Iterator[JsonObject]:
    path = bundle_file(folder, source, entry)
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


@dataclass(frozen=True)
class VerifyingKey:
    public_key: str  # PEM
    source: str | None  # None: a bundle of the first format, which bound keys to nothing
    from_bundle: bool


@dataclass
class BundleAudit(SourceAudit):
    """A source of a bundle: its chain, its checkpoints, and what no signature covers."""

    signed_position: int = 0
    unsigned_events: int = 0
    bundle_keys_used: set[str] = field(default_factory=set)


def bundle_keys(manifest: JsonObject) -> dict[str, VerifyingKey]:
    found: dict[str, VerifyingKey] = {}
    for key_id, value in (manifest.get("public_keys") or {}).items():
        if isinstance(value, str):
            found[str(key_id)] = VerifyingKey(value, None, from_bundle=True)
        elif isinstance(value, dict):
            found[str(key_id)] = VerifyingKey(
                str(value.get("public_key", "")), str(value.get("source", "")), from_bundle=True
            )
    return found


def verifying_keys(
    manifest: JsonObject, trusted: TrustedKeys | None, *, trust_bundle_keys: bool
) -> dict[str, VerifyingKey]:
    """The trusted keys, and the bundle's own beside them only when asked for."""
    if trusted is None and not trust_bundle_keys:
        raise BundleInvalid(
            "no trusted keys: give --keys FILE (the published key list) or set "
            "IPMG_AUDIT_TRUSTED_KEYS; --trust-bundle-keys checks the bundle against itself only"
        )
    keys = bundle_keys(manifest) if trust_bundle_keys else {}
    for key_id, key in (trusted.keys if trusted else {}).items():
        keys[key_id] = VerifyingKey(key.public_key, key.source, from_bundle=False)
    return keys


def verify_bundle(
    folder: Path,
    trusted: TrustedKeys | None,
    *,
    trust_bundle_keys: bool = False,
    allow_unsigned_tail: bool = False,
) -> list[BundleAudit]:
    """Verify a bundle with nothing but its files and the keys the auditor trusts."""
    manifest = read_manifest(folder)
    keys = verifying_keys(manifest, trusted, trust_bundle_keys=trust_bundle_keys)
    carried = bundle_keys(manifest)
    audits = []
    for source, entry in sorted((manifest.get("sources") or {}).items()):
        audit = _verify_source(folder, source, entry, keys, carried)
        if audit.unsigned_events and not allow_unsigned_tail:
            audit.problems.append(
                ChainBreak(
                    audit.signed_position + 1,
                    BreakKind.CHECKPOINT,
                    f"{audit.unsigned_events} events after the last signed checkpoint "
                    f"(position {audit.signed_position}) are unprotected; "
                    "--allow-unsigned-tail accepts them",
                )
            )
        audits.append(audit)
    return audits


def _verify_source(
    folder: Path,
    source: str,
    entry: JsonObject,
    keys: dict[str, VerifyingKey],
    carried: dict[str, VerifyingKey],
) -> BundleAudit:
    verifier = ChainVerifier(source)
    hashes: dict[int, str] = {0: GENESIS_HASH}
    checkpoints: list[tuple[JsonObject | None, ChainCheckpointSigned]] = []
    try:
        for event in bundle_events(folder, source, entry):
            if not verifier.feed(event):
                break
            hashes[int(event["position"])] = str(event["hash"])
            if event["type"] == CHECKPOINT_TYPE:
                checkpoints.append((event, ChainCheckpointSigned.model_validate(event["payload"])))
        signed_head = entry.get("signed_head")
        if signed_head is not None:
            checkpoints.append((None, ChainCheckpointSigned.model_validate(signed_head)))
    except (KeyError, TypeError, ValueError, ValidationError) as error:
        if isinstance(error, BundleInvalid):
            raise
        raise BundleInvalid(f"{source}: an event lacks a field or has a bad one") from error
    report = verifier.report
    audit = BundleAudit(source, report, checkpoints=len(checkpoints))
    if not report.ok:
        return audit
    if (
        _sha256(bundle_file(folder, source, entry)) != entry.get("sha256")
        or report.events != entry.get("events")
        or report.head_hash != entry.get("head_hash")
    ):
        audit.problems.append(
            ChainBreak(
                report.head_position + 1,
                BreakKind.MISSING,
                "the file does not match the manifest (truncated or edited)",
            )
        )
    for carrier, checkpoint in checkpoints:
        problem = _checkpoint_problem(source, checkpoint, keys, carried, hashes)
        if carrier is None and problem is None and checkpoint.position != report.head_position:
            problem = ChainBreak(
                checkpoint.position,
                BreakKind.CHECKPOINT,
                f"the head signed at export is position {checkpoint.position}, "
                f"the file ends at {report.head_position}",
            )
        if problem is not None:
            audit.problems.append(problem.at(carrier) if carrier else problem)
            return audit
        audit.signed_position = max(audit.signed_position, checkpoint.position)
        if keys[checkpoint.key_id].from_bundle:
            audit.bundle_keys_used.add(checkpoint.key_id)
    checkpoint_events_after = sum(
        1
        for carrier, _ in checkpoints
        if carrier and int(carrier["position"]) > audit.signed_position
    )
    audit.unsigned_events = report.head_position - audit.signed_position - checkpoint_events_after
    return audit


def _checkpoint_problem(
    source: str,
    checkpoint: ChainCheckpointSigned,
    keys: dict[str, VerifyingKey],
    carried: dict[str, VerifyingKey],
    hashes: dict[int, str],
) -> ChainBreak | None:
    def broken(detail: str) -> ChainBreak:
        return ChainBreak(checkpoint.position, BreakKind.CHECKPOINT, detail)

    key = keys.get(checkpoint.key_id)
    if key is None:
        return broken(
            f"checkpoint signed with key {checkpoint.key_id}, which only the bundle vouches "
            "for: it is not among the trusted keys (--trust-bundle-keys accepts it)"
            if checkpoint.key_id in carried
            else f"checkpoint signed with unknown key {checkpoint.key_id}"
        )
    if checkpoint.source != source:
        return broken(f"a checkpoint of {checkpoint.source} stands in {source}'s record")
    if key.source is not None and key.source != source:
        return broken(f"key {checkpoint.key_id} is bound to {key.source}, not to {source}")
    if not signature_is_valid(checkpoint, {checkpoint.key_id: key.public_key}):
        return broken(f"checkpoint signature does not verify with key {checkpoint.key_id}")
    if hashes.get(checkpoint.position) != checkpoint.hash:
        return broken(
            f"a signed checkpoint names another hash for position {checkpoint.position}: "
            "the chain was rewritten"
        )
    return None
