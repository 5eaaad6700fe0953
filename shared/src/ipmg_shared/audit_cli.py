"""``ipmg audit …``: verify stores, topics and bundles; export; checkpoints and keys; trails.

Replay (``ipmg audit replay``) runs reporting's projection code, so reporting contributes it
through the ``ipmg.audit`` entry-point group; this module knows no service.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ipmg_shared.audit import SourceAudit, audit_source, write_checkpoint
from ipmg_shared.bundles import BundleAudit, BundleInvalid, export_bundle, verify_bundle
from ipmg_shared.checkpoints import Keyring, KeyUnavailable
from ipmg_shared.db import create_pool
from ipmg_shared.events import EventRegistry, JsonObject
from ipmg_shared.key_list import (
    KeyListInvalid,
    TrustedKeys,
    auditor_trusted_keys,
    is_current,
    load_key_list,
    publish,
)
from ipmg_shared.secrets import require_auditor_password
from ipmg_shared.settings import WRITE_SOURCES, Settings, get_settings
from ipmg_shared.store import AppendResult, EventStore

audit_app = typer.Typer(
    help="Prove nothing was altered; export, replay and read history.", no_args_is_help=True
)
keys_app = typer.Typer(
    help="Ed25519 keys that sign each source's checkpoints.", no_args_is_help=True
)
audit_app.add_typer(keys_app, name="keys")
console = Console()


def _sources(source: str | None) -> list[str]:
    from ipmg_shared.cli import CliError

    if source is None:
        return list(WRITE_SOURCES)
    if source not in WRITE_SOURCES:
        raise CliError(f"unknown source {source!r}; sources: {', '.join(WRITE_SOURCES)}")
    return [source]


def _auditor_settings() -> Settings:
    """The settings of a command that reads the stores as the auditor role."""
    from ipmg_shared.cli import _require

    settings = get_settings()
    _require(require_auditor_password, settings)
    return settings


def _print(audits: Sequence[SourceAudit], *, with_topic: bool) -> None:
    table = Table(
        "source",
        "events",
        "head position",
        "head hash",
        "checkpoints",
        *(["topic", "unpublished", "newer than cut"] if with_topic else []),
        "result",
    )
    for audit in audits:
        topic = audit.topic
        table.add_row(
            audit.source,
            str(audit.store.events),
            str(audit.store.head_position),
            audit.store.head_hash[:16],
            str(audit.checkpoints),
            *(
                [
                    f"{topic.events if topic else 0} events",
                    str(audit.unpublished),
                    str(audit.newer_than_cut),
                ]
                if with_topic
                else []
            ),
            "ok" if audit.ok else f"BROKEN: {audit.first_problem}",
        )
    console.print(table)


def _conclude(audits: Sequence[SourceAudit]) -> None:
    from ipmg_shared.cli import CliError

    broken = [audit for audit in audits if not audit.ok]
    if broken:
        raise CliError("; ".join(f"{a.source}: {a.first_problem}" for a in broken))


KeysOption = Annotated[
    Path | None,
    typer.Option(
        help="The published key list to trust (a file, or a keys folder holding one); "
        "default: IPMG_AUDIT_TRUSTED_KEYS, else the keys folder's list"
    ),
]
TrustBundleKeysOption = Annotated[
    bool,
    typer.Option(
        help="Also accept checkpoints signed with keys the bundle brought (proves only that "
        "the bundle agrees with itself)"
    ),
]
AllowUnsignedTailOption = Annotated[
    bool,
    typer.Option(help="Accept events after the last signed checkpoint (said, not failed)"),
]


@audit_app.command("verify")
def verify(
    bundle: Annotated[
        Path | None, typer.Argument(help="An exported bundle to verify offline")
    ] = None,
    source: Annotated[str | None, typer.Option(help="Only this write source")] = None,
    keys: KeysOption = None,
    trust_bundle_keys: TrustBundleKeysOption = False,
    allow_unsigned_tail: AllowUnsignedTailOption = False,
) -> None:
    """Check every hash, link, version and signed checkpoint: of each store and its Kafka
    topic (compared event for event, up to the store's head when the check began), or of a
    bundle with no server at all."""
    from ipmg_shared.cli import run_async

    settings = get_settings()
    if bundle is not None:
        audits = checked_bundle(
            settings,
            bundle,
            keys,
            trust_bundle_keys=trust_bundle_keys,
            allow_unsigned_tail=allow_unsigned_tail,
        )
        _print(audits, with_topic=False)
        _conclude(audits)
        return
    settings = _auditor_settings()
    public_keys = (
        _trusted(settings, keys).pems() if keys else Keyring(settings.keys_dir).public_keys()
    )
    # The Kafka client's own complaints would go to stderr: a server down is said in one line.
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    live = [run_async(audit_source(settings, name, public_keys)) for name in _sources(source)]
    _print(live, with_topic=True)
    _conclude(live)


def _trusted(settings: Settings, keys: Path | None) -> TrustedKeys:
    from ipmg_shared.cli import CliError

    try:
        trusted = auditor_trusted_keys(settings, keys)
    except KeyListInvalid as error:
        raise CliError(str(error)) from error
    if trusted is None:
        raise CliError("no trusted keys: give --keys FILE or set IPMG_AUDIT_TRUSTED_KEYS")
    return trusted


def checked_bundle(
    settings: Settings,
    bundle: Path,
    keys: Path | None,
    *,
    trust_bundle_keys: bool,
    allow_unsigned_tail: bool,
) -> list[BundleAudit]:
    """A bundle verified against the trusted keys, with what the trust rests on said;
    raises ``CliError`` (one line) when it cannot be read or keys are missing."""
    from ipmg_shared.cli import CliError

    try:
        trusted = auditor_trusted_keys(settings, keys)
        audits = verify_bundle(
            bundle,
            trusted,
            trust_bundle_keys=trust_bundle_keys,
            allow_unsigned_tail=allow_unsigned_tail,
        )
    except (KeyListInvalid, BundleInvalid) as error:
        raise CliError(str(error)) from error
    if trusted is not None:
        console.print(f"trusted keys: {trusted.origin}")
    for audit in audits:
        if audit.bundle_keys_used:
            console.print(
                f"[bold]{audit.source}: trusting keys the bundle brought, not the published "
                f"list: {', '.join(sorted(audit.bundle_keys_used))}[/bold]"
            )
        if audit.unsigned_events and allow_unsigned_tail:
            console.print(
                f"{audit.source}: {audit.unsigned_events} events after the last signed "
                f"checkpoint (position {audit.signed_position}) are unprotected"
            )
    return audits


@audit_app.command("watch")
def watch(
    port: Annotated[int | None, typer.Option(help="HTTP port (metrics, health)")] = None,
    host: Annotated[str | None, typer.Option(help="HTTP host")] = None,
    state: Annotated[Path | None, typer.Option(help="The file it keeps its heads in")] = None,
    store_every: Annotated[
        float | None, typer.Option(min=0.1, help="Seconds between comparisons with each store")
    ] = None,
) -> None:
    """Verify continuously: follow each event topic from the last verified head, check every
    new event as it arrives, compare with each store on a cadence; serve metrics and health."""
    from ipmg_shared.audit_watch import AuditWatch
    from ipmg_shared.cli import run_async
    from ipmg_shared.logging import configure_logging

    settings = _auditor_settings()
    configure_logging(settings.log_level, settings.log_json)
    watcher = AuditWatch(
        settings,
        state or settings.audit_watch_state,
        store_interval_s=store_every or settings.audit_watch_store_interval_s,
    )
    run_async(watcher.run(host or settings.http_host, port or settings.audit_watch_port))


@audit_app.command("export")
def export(
    out: Annotated[Path, typer.Option(help="Folder to write the bundle into (must not exist)")],
    until: Annotated[datetime | None, typer.Option(help="Last instant included (UTC)")] = None,
) -> None:
    """Write a self-contained bundle: events per source, each head signed now, manifest,
    checkpoints, public keys."""
    from ipmg_shared.cli import CliError, run_async

    if out.exists():
        raise CliError(f"{out} already exists: choose a new folder")
    settings = _auditor_settings()
    instant = (until or datetime.now(UTC)).replace(tzinfo=(until.tzinfo if until else UTC) or UTC)
    try:
        manifest = run_async(
            export_bundle(settings, WRITE_SOURCES, instant, out, Keyring(settings.keys_dir))
        )
    except KeyUnavailable as error:
        raise CliError(str(error)) from error
    for name, entry in manifest["sources"].items():
        console.print(
            f"{name}: {entry['events']} events, head {entry['head_position']} "
            f"{entry['head_hash'][:16]}, signed at export"
        )
    console.print(f"bundle written to {out}")


@audit_app.command("checkpoint")
def checkpoint(
    source: Annotated[str | None, typer.Option(help="Only this write source")] = None,
) -> None:
    """Sign each source's chain head now and append the checkpoint to its store."""
    from ipmg_shared.cli import run_async

    settings = get_settings()
    for name in _sources(source):
        result = run_async(_checkpoint(settings, name))
        console.print(
            f"{name}: checkpoint at position {result.first_position}"
            if result
            else f"{name}: nothing to sign yet"
        )


async def _checkpoint(settings: Settings, source: str) -> AppendResult | None:
    pool = await create_pool(settings.service_dsn(source), settings, max_size=2)
    try:
        return await write_checkpoint(
            EventStore(pool, source, EventRegistry()), Keyring(settings.keys_dir)
        )
    finally:
        await pool.close()


@keys_app.command("generate")
def keys_generate(
    source: Annotated[str | None, typer.Option(help="Only this write source")] = None,
    missing_only: Annotated[bool, typer.Option(help="Keep sources that have a key")] = False,
) -> None:
    """Make a new signing key the active one (rotation), then sign and write the published
    key list again; older public keys are kept."""
    keyring = Keyring(get_settings().keys_dir)
    keyring.adopt_flat_layout()
    for name in _sources(source):
        if missing_only and keyring.active_key_id(name) is not None:
            continue
        console.print(f"{name}: key {keyring.generate(name)} is now active")
    if not is_current(keyring):
        console.print(f"published key list written to {publish(keyring)}")


@keys_app.command("list")
def keys_list(
    keys: Annotated[
        Path | None,
        typer.Option(help="A published key list (default: the keys folder's)"),
    ] = None,
) -> None:
    """The published key list: each key's source and fingerprint, which are active, and who
    signed the list. Compare these fingerprints with the ones published out of band."""
    from ipmg_shared.cli import CliError

    settings = get_settings()
    try:
        listed = load_key_list(keys or settings.keys_dir)
    except KeyListInvalid as error:
        raise CliError(str(error)) from error
    keyring = Keyring(settings.keys_dir)
    active = {keyring.active_key_id(name) for name in WRITE_SOURCES}
    typer.echo(f"key list: {listed.origin}")
    for key in sorted(listed.keys.values(), key=lambda k: (k.source, k.key_id)):
        typer.echo(
            f"{key.source:<14} {key.key_id}  {key.fingerprint}"
            f"{'  active' if key.key_id in active else ''}"
        )


@audit_app.command("trail")
def trail(
    entity_id: Annotated[str, typer.Argument(help="A meeting's or resolution's id")],
) -> None:
    """The human history of one entity: when, who (subject, unit, role), what, and why."""
    from ipmg_shared.cli import CliError, run_async

    rows = run_async(_trail(get_settings(), entity_id))
    if not rows:
        raise CliError(f"no meeting or resolution {entity_id} in any store")
    # One plain line an event, then its reasons and comments in full, indented beneath it:
    # readable on a terminal, in a file, and through grep.
    for event in rows:
        actor = event["actor"]
        typer.echo(
            f"{event['recorded_at'][:19]}  {event['source']}:{event['position']}  "
            f"{_summary(event)}  by {actor['subject']} ({actor['unit']}, {actor['role']})  "
            f"correlation {event['correlation_id']}, "
            f"caused by {event['causation_id'] or 'a command'}"
        )
        for name, text in _explanations(event):
            typer.echo(f"    {name}: {text}")


async def _trail(settings: Settings, entity_id: str) -> list[JsonObject]:
    found: list[JsonObject] = []
    for source in WRITE_SOURCES:
        pool = await create_pool(settings.service_dsn(source), settings, max_size=2)
        try:
            streams = await pool.fetch(
                "SELECT DISTINCT stream_id FROM events WHERE stream_id LIKE $1",
                f"%-{entity_id}",
            )
            store = EventStore(pool, source, EventRegistry())
            for row in streams:
                found += [e.to_json() for e in await store.read_stream(row["stream_id"])]
        finally:
            await pool.close()
    return sorted(found, key=lambda event: str(event["recorded_at"]))


def _summary(event: JsonObject) -> str:
    """The event's type in words and its most telling fields."""
    words = "".join(f" {c.lower()}" if c.isupper() else c for c in str(event["type"])).strip()
    payload = event["payload"] if isinstance(event["payload"], dict) else {}
    telling = (
        "title",
        "unit",
        "position",
        "status",
        "percent",
        "held_on",
        "scheduled_for",
        "host_unit",
        "quarter",
        "outcome",
        "action_id",
    )
    details = ", ".join(f"{name} {payload[name]}" for name in telling if name in payload)
    return f"{words}: {details}" if details else words


# Payload fields written by people to say why; shown in full under the event's line.
EXPLANATIONS = ("reason", "comments", "narrative", "basis", "override_reason", "note")


def _explanations(event: JsonObject) -> list[tuple[str, str]]:
    payload = event["payload"] if isinstance(event["payload"], dict) else {}
    return [
        (name.replace("_", " "), " ".join(str(value).split()))
        for name, value in payload.items()
        if (name in EXPLANATIONS or name.endswith("_reason")) and value
    ]


def add_contributed_commands() -> None:
    """``ipmg audit`` commands that services contribute (e.g. reporting's ``replay``)."""
    for entry in entry_points(group="ipmg.audit"):
        audit_app.command(entry.name)(entry.load())
