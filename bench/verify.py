"""``python -m bench.verify``: how fast an auditor verifies a bundle, beside the floor.

A bundle of a valid history (``bench.history``'s block, copied; each source's chain hashed
again so it verifies) with every head signed at export, written to a temporary folder. Then,
in one run:

- ``ipmg audit verify BUNDLE --keys …`` as an auditor runs it: the process's wall time;
- ``verify_bundle`` in this process: events per second and CPU seconds;
- the floor: a bare SHA-256 loop over the same canonical bytes, already encoded;
- between them: read the JSON lines, encode canonically and hash, nothing else.

No servers are needed. ``--events 1000000`` is the size the figures are quoted at (about a
gigabyte of bundle and a few minutes on two cores); the default is smaller.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.history import block, copies
from ipmg_shared.bundles import verify_bundle
from ipmg_shared.canonical import GENESIS_HASH, canonical_bytes, format_instant
from ipmg_shared.checkpoints import Keyring, sign_checkpoint
from ipmg_shared.envelope import hash_event_fields
from ipmg_shared.key_list import load_key_list, publish

IPMG = Path(sys.executable).with_name("ipmg")
CHUNK = 20_000


def write_bundle(folder: Path, keys: Keyring, events: int) -> dict[str, int]:
    """A verifiable bundle of ``events`` events; returns how many each source has."""
    templates, counts = block()
    (folder / "events").mkdir(parents=True)
    files: dict[str, Any] = {}
    heads: dict[str, tuple[int, str]] = {}
    try:
        for source, _, value, _ in copies(templates, counts, events):
            event = json.loads(value)
            position, previous = heads.get(source, (0, GENESIS_HASH))
            event["position"] = position + 1
            event["prev_hash"] = previous
            event["hash"] = hash_event_fields(event)
            heads[source] = (position + 1, event["hash"])
            if source not in files:
                files[source] = (folder / "events" / f"{source}.jsonl").open("w")
            files[source].write(json.dumps(event, ensure_ascii=False, separators=(",", ":")))
            files[source].write("\n")
    finally:
        for out in files.values():
            out.close()
    sources: dict[str, Any] = {}
    for source, (position, head_hash) in sorted(heads.items()):
        keys.generate(source)
        path = folder / "events" / f"{source}.jsonl"
        signed = sign_checkpoint(source, position, head_hash, datetime.now(UTC), keys)
        sources[source] = {
            "file": f"events/{source}.jsonl",
            "events": position,
            "head_position": position,
            "head_hash": head_hash,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "signed_head": signed.model_dump(mode="json"),
        }
    publish(keys)
    manifest = {
        "format": "ipmg-audit-bundle/2",
        "created_at": format_instant(datetime.now(UTC)),
        "until": format_instant(datetime.now(UTC)),
        "sources": sources,
        "checkpoints": [],
        "public_keys": {},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return {source: head[0] for source, head in heads.items()}


def chunks(folder: Path) -> Iterator[list[str]]:
    for path in sorted((folder / "events").glob("*.jsonl")):
        with path.open(encoding="utf-8") as lines:
            chunk: list[str] = []
            for line in lines:
                chunk.append(line)
                if len(chunk) == CHUNK:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk


Timing = tuple[float, float]  # wall seconds, CPU seconds


def floors(folder: Path) -> tuple[Timing, Timing]:
    """A bare SHA-256 loop over the canonical bytes (encoded beforehand, untimed), and
    reading, encoding and hashing together."""
    bare = [0.0, 0.0]
    whole = [0.0, 0.0]
    for chunk in chunks(folder):
        started, cpu = time.perf_counter(), time.process_time()
        encoded = [
            canonical_bytes({k: v for k, v in json.loads(line).items() if k != "hash"})
            for line in chunk
        ]
        for data in encoded:
            hashlib.sha256(data).hexdigest()
        whole[0] += time.perf_counter() - started
        whole[1] += time.process_time() - cpu
        started, cpu = time.perf_counter(), time.process_time()
        for data in encoded:
            hashlib.sha256(data).hexdigest()
        bare[0] += time.perf_counter() - started
        bare[1] += time.process_time() - cpu
    return (bare[0], bare[1]), (whole[0], whole[1])


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(events: int) -> str:
    with tempfile.TemporaryDirectory(prefix="ipmg-bench-verify-") as scratch:
        folder, keys = Path(scratch) / "bundle", Keyring(Path(scratch) / "keys")
        started = time.perf_counter()
        per_source = write_bundle(folder, keys, events)
        made_in = time.perf_counter() - started
        size_mib = sum(p.stat().st_size for p in folder.rglob("*.jsonl")) / 2**20

        started, cpu = time.perf_counter(), time.process_time()
        audits = verify_bundle(folder, load_key_list(keys.folder))
        ours, ours_cpu = time.perf_counter() - started, time.process_time() - cpu
        assert all(audit.ok for audit in audits), [str(a.first_problem) for a in audits]

        started, cpu = time.perf_counter(), children_cpu()
        done = subprocess.run(
            [str(IPMG), "audit", "verify", str(folder), "--keys", str(keys.folder)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "IPMG_KEYS_DIR": str(keys.folder)},
        )
        auditor = (time.perf_counter() - started, children_cpu() - cpu)
        assert done.returncode == 0, done.stderr
        bare, whole = floors(folder)
    rows = [
        ("`ipmg audit verify BUNDLE` (the auditor's wall time)", auditor),
        ("`verify_bundle` in process", (ours, ours_cpu)),
        ("read, encode canonically, SHA-256", whole),
        ("bare SHA-256 over the canonical bytes (the floor)", bare),
    ]
    lines = [
        f"{events:,} events ({', '.join(f'{s} {n:,}' for s, n in sorted(per_source.items()))}),"
        f" {size_mib:,.0f} MiB of JSON lines, made in {made_in:.0f} s. The CLI's figures"
        " include starting Python and importing the project.",
        "",
        "| contender | wall s | events/s | CPU s | CPU ÷ floor's |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (wall, used) in rows:
        lines.append(
            f"| {name} | {wall:.1f} | {events / wall:,.0f} | {used:.1f} | {used / bare[1]:.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verify", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000, help="events in the bundle")
    print(run(parser.parse_args(argv).events))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
