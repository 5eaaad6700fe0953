"""Audit bundles from a real PostgreSQL store: exported with each head signed at export, and
verified offline against the published key list, never only against the keys they carry."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from ipmg_shared.audit import write_checkpoint
from ipmg_shared.bundles import BundleInvalid, export_bundle, verify_bundle
from ipmg_shared.canonical import parse_instant
from ipmg_shared.chain import BreakKind
from ipmg_shared.checkpoints import Keyring, KeyUnavailable, sign_checkpoint
from ipmg_shared.envelope import hash_event_fields
from ipmg_shared.key_list import PublishedKey, TrustedKeys, load_key_list, publish
from ipmg_shared.settings import Settings
from ipmg_shared.store import EventStore
from tests.support.processes import IPMG, service_env
from tests.support.sample_events import REGISTRY, SECRETARIAT, notes

pytestmark = pytest.mark.infra


@pytest.fixture
def keys(tmp_path: Path, service_name: str) -> Keyring:
    keyring = Keyring(tmp_path / "keys")
    keyring.generate(service_name)
    publish(keyring)
    return keyring


@pytest.fixture
async def history(service_name: str, service_pool: asyncpg.Pool, keys: Keyring) -> EventStore:
    """10 notes, a checkpoint signed by the source's key over position 10, 5 notes more."""
    store = EventStore(service_pool, service_name, REGISTRY)
    for i in range(15):
        await store.append(
            f"note-{i % 3}", None, notes(f"n{i}"), actor=SECRETARIAT, correlation_id=uuid4()
        )
        if i == 9:
            await write_checkpoint(store, keys)
    return store


async def exported(
    settings: Settings, source: str, keys: Keyring, folder: Path, until: datetime | None = None
) -> Path:
    await export_bundle(settings, [source], until or datetime.now(UTC), folder, keys)
    return folder


def ipmg(keys_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as an auditor runs it: no servers needed, only this keys folder configured."""
    env = service_env(Settings(), IPMG_KEYS_DIR=str(keys_dir))
    env.pop("IPMG_AUDIT_TRUSTED_KEYS", None)
    return subprocess.run(
        [str(IPMG), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def one_clear_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("ipmg: error: ")
    return done.stderr


def events_of(bundle: Path, source: str) -> list[dict[str, Any]]:
    path = bundle / "events" / f"{source}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def rechain(events: list[dict[str, Any]], from_position: int) -> None:
    """Recompute every hash and link from ``from_position`` on, as a forger would."""
    for previous, event in itertools.pairwise([{"hash": "0" * 64}, *events]):
        if event["position"] >= from_position:
            event["prev_hash"] = previous["hash"]
            event["hash"] = hash_event_fields(event)


def write_back(bundle: Path, source: str, events: list[dict[str, Any]]) -> None:
    """The events file written again and the manifest's figures made to agree with it."""
    path = bundle / "events" / f"{source}.jsonl"
    path.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["sources"][source].update(
        events=len(events),
        head_position=events[-1]["position"],
        head_hash=events[-1]["hash"],
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def rewrite_bundle(bundle: Path, source: str, from_position: int, text: str) -> None:
    """A consistent rewrite: one note's text changed, every later hash and link recomputed,
    the manifest updated."""
    events = events_of(bundle, source)
    events[from_position - 1]["payload"] = {**events[from_position - 1]["payload"], "text": text}
    rechain(events, from_position)
    write_back(bundle, source, events)


async def test_a_fresh_bundle_has_its_head_signed_and_verifies_against_the_published_list(
    postgres: Settings, service_name: str, history: EventStore, keys: Keyring, tmp_path: Path
) -> None:
    bundle = await exported(postgres, service_name, keys, tmp_path / "bundle")
    entry = json.loads((bundle / "manifest.json").read_text())["sources"][service_name]
    assert (entry["events"], entry["head_position"]) == (16, 16)
    assert (entry["signed_head"]["position"], entry["signed_head"]["hash"]) == (
        16,
        entry["head_hash"],
    )
    [audit] = verify_bundle(bundle, load_key_list(keys.folder))
    assert audit.ok, audit.first_problem
    assert (audit.signed_position, audit.unsigned_events, audit.checkpoints) == (16, 0, 2)

    done = await asyncio.to_thread(ipmg, keys.folder, "audit", "verify", str(bundle))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "trusted keys:" in done.stdout


async def test_a_bundle_rewritten_and_resigned_with_its_own_key_fails_unless_told(
    postgres: Settings, service_name: str, history: EventStore, keys: Keyring, tmp_path: Path
) -> None:
    bundle = await exported(postgres, service_name, keys, tmp_path / "bundle")
    # The forger rewrites note 3, signs the checkpoint at 11 and the head again with a key of
    # their own, and puts that key in the bundle in place of the source's.
    forger = Keyring(tmp_path / "forger")
    forger.generate(service_name)
    events = events_of(bundle, service_name)
    events[2]["payload"] = {**events[2]["payload"], "text": "forged"}
    rechain(events, 3)
    now = datetime.now(UTC)
    resigned = sign_checkpoint(service_name, 10, events[9]["hash"], now, forger)
    events[10]["payload"] = resigned.model_dump(mode="json")
    rechain(events, 11)
    write_back(bundle, service_name, events)
    manifest = json.loads((bundle / "manifest.json").read_text())
    head = sign_checkpoint(service_name, 16, events[-1]["hash"], now, forger)
    manifest["sources"][service_name]["signed_head"] = head.model_dump(mode="json")
    manifest["public_keys"] = {
        key_id: {"source": service_name, "public_key": pem}
        for key_id, pem in forger.public_keys().items()
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    [alone] = verify_bundle(bundle, None, trust_bundle_keys=True)
    assert alone.ok, "the forgery agrees with itself"

    [audit] = verify_bundle(bundle, load_key_list(keys.folder))
    assert audit.first_problem is not None
    assert audit.first_problem.kind is BreakKind.CHECKPOINT
    assert "only the bundle vouches for" in audit.first_problem.detail

    refused = one_clear_line(
        await asyncio.to_thread(ipmg, keys.folder, "audit", "verify", str(bundle))
    )
    assert "not among the trusted keys" in refused
    accepted = await asyncio.to_thread(
        ipmg, keys.folder, "audit", "verify", str(bundle), "--trust-bundle-keys"
    )
    assert accepted.returncode == 0, accepted.stderr
    assert "trusting keys the bundle brought" in accepted.stdout
    replay = ("audit", "replay", str(bundle), "--as-of", "2100-01-01")
    refused = one_clear_line(await asyncio.to_thread(ipmg, keys.folder, *replay))
    assert "only the bundle vouches for" in refused
    replayed = await asyncio.to_thread(ipmg, keys.folder, *replay, "--trust-bundle-keys")
    assert replayed.returncode == 0, replayed.stderr
    assert "trusting keys the bundle brought" in replayed.stdout
    with pytest.raises(BundleInvalid, match="no trusted keys"):
        verify_bundle(bundle, None)
    nothing_trusted = one_clear_line(
        await asyncio.to_thread(ipmg, tmp_path / "empty", "audit", "verify", str(bundle))
    )
    assert "no trusted keys" in nothing_trusted


async def test_an_unsigned_rewritten_tail_fails_naming_how_many_unless_allowed(
    postgres: Settings, service_name: str, history: EventStore, keys: Keyring, tmp_path: Path
) -> None:
    bundle = await exported(postgres, service_name, keys, tmp_path / "bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["sources"][service_name]["signed_head"]  # the export's signature, dropped
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    rewrite_bundle(bundle, service_name, 13, "forged")

    [audit] = verify_bundle(bundle, load_key_list(keys.folder))
    assert audit.first_problem is not None
    assert (audit.first_problem.kind, audit.first_problem.position) == (BreakKind.CHECKPOINT, 11)
    assert audit.unsigned_events == 5
    refused = one_clear_line(
        await asyncio.to_thread(ipmg, keys.folder, "audit", "verify", str(bundle))
    )
    assert "5 events after the last signed checkpoint (position 10)" in refused
    allowed = await asyncio.to_thread(
        ipmg, keys.folder, "audit", "verify", str(bundle), "--allow-unsigned-tail"
    )
    assert allowed.returncode == 0, allowed.stderr
    assert "5 events after the last signed checkpoint" in allowed.stdout

    # With the export's signature left in place, the same rewrite breaks it.
    signed = await exported(postgres, service_name, keys, tmp_path / "signed")
    rewrite_bundle(signed, service_name, 13, "forged")
    [audit] = verify_bundle(signed, load_key_list(keys.folder), allow_unsigned_tail=True)
    assert audit.first_problem is not None
    assert (audit.first_problem.kind, audit.first_problem.position) == (BreakKind.CHECKPOINT, 16)


async def test_a_checkpoint_signed_with_a_key_bound_to_another_source_is_refused(
    postgres: Settings, service_name: str, history: EventStore, keys: Keyring, tmp_path: Path
) -> None:
    bundle = await exported(postgres, service_name, keys, tmp_path / "bundle")
    [(key_id, pem)] = keys.public_keys().items()
    elsewhere = TrustedKeys({key_id: PublishedKey(key_id, "meetings", pem)}, "a test list")
    [audit] = verify_bundle(bundle, elsewhere)
    assert audit.first_problem is not None
    assert f"key {key_id} is bound to meetings, not to {service_name}" in str(audit.first_problem)


async def test_a_manifest_path_outside_the_bundle_is_refused(
    postgres: Settings, service_name: str, history: EventStore, keys: Keyring, tmp_path: Path
) -> None:
    bundle = await exported(postgres, service_name, keys, tmp_path / "bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    outside = tmp_path / "outside.jsonl"
    shutil.copy(bundle / "events" / f"{service_name}.jsonl", outside)
    link = bundle / "events" / "link.jsonl"
    link.symlink_to(outside)
    for name in ("../../etc/passwd", "/etc/passwd", str(outside), "events/link.jsonl"):
        manifest["sources"][service_name]["file"] = name
        (bundle / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(BundleInvalid, match=r"outside the bundle|leads outside"):
            verify_bundle(bundle, load_key_list(keys.folder))
    manifest["sources"][service_name]["file"] = "../../etc/passwd"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    refused = one_clear_line(
        await asyncio.to_thread(ipmg, keys.folder, "audit", "verify", str(bundle))
    )
    assert "'../../etc/passwd'" in refused
    assert "outside the bundle folder: refused" in refused


async def test_a_break_names_the_event_its_stream_and_type(
    postgres: Settings, service_name: str, history: EventStore, keys: Keyring, tmp_path: Path
) -> None:
    bundle = await exported(postgres, service_name, keys, tmp_path / "bundle")
    path = bundle / "events" / f"{service_name}.jsonl"
    events = events_of(bundle, service_name)
    path.write_text(path.read_text().replace('"text":"n5"', '"text":"n6"'))
    done = one_clear_line(
        await asyncio.to_thread(ipmg, keys.folder, "audit", "verify", str(bundle))
    )
    changed = events[5]
    assert (
        f"position 6: changed: content does not match its hash (event {changed['event_id']}, "
        f"stream {changed['stream_id']}, NoteRecorded)"
    ) in done


async def test_an_export_under_concurrent_appends_agrees_with_itself(
    postgres: Settings, service_name: str, history: EventStore, keys: Keyring, tmp_path: Path
) -> None:
    stop = asyncio.Event()

    async def keep_appending() -> int:
        appended = 0
        while not stop.is_set():
            await history.append(
                f"busy-{appended % 5}",
                None,
                notes(f"b{appended}", f"c{appended}"),
                actor=SECRETARIAT,
                correlation_id=uuid4(),
            )
            appended += 1
        return appended

    writers = [asyncio.create_task(keep_appending()) for _ in range(3)]
    await asyncio.sleep(0.3)
    bundles = []
    for round_ in range(3):
        until = datetime.now(UTC)
        folder = tmp_path / f"b{round_}"
        bundles.append(await exported(postgres, service_name, keys, folder, until))
        manifest = json.loads((bundles[-1] / "manifest.json").read_text())
        events = events_of(bundles[-1], service_name)
        entry = manifest["sources"][service_name]
        assert [e["position"] for e in events] == list(range(1, entry["head_position"] + 1))
        assert entry["signed_head"]["position"] == entry["head_position"] == entry["events"]
        assert all(parse_instant(e["recorded_at"]) <= until for e in events)
        [audit] = verify_bundle(bundles[-1], load_key_list(keys.folder))
        assert audit.ok, audit.first_problem
        assert audit.unsigned_events == 0
    stop.set()
    appended = sum(await asyncio.gather(*writers))
    assert appended > 0
    heads = [
        json.loads((b / "manifest.json").read_text())["sources"][service_name]["head_position"]
        for b in bundles
    ]
    assert heads == sorted(heads)
    assert heads[0] < heads[-1], "the writers appended while the bundles were exported"


async def test_an_export_without_the_sources_key_writes_nothing(
    postgres: Settings, service_name: str, history: EventStore, tmp_path: Path
) -> None:
    folder = tmp_path / "bundle"
    with pytest.raises(KeyUnavailable, match=f"no signing key for {service_name}"):
        await export_bundle(
            postgres, [service_name], datetime.now(UTC), folder, Keyring(tmp_path / "none")
        )
    assert not folder.exists()
