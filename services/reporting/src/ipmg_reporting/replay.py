"""``ipmg audit replay <bundle> --as-of <instant>``: the reports as of any instant, from an
exported bundle alone — no Kafka, no PostgreSQL. The same projection and report code as the
live service runs in memory over the bundle's events recorded up to that instant."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from textwrap import shorten
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ipmg_reporting.projections import Model, model_from_envelopes
from ipmg_reporting.reports import (
    meeting_history,
    reference_day,
    scorecards,
    spreadsheet_safe,
    tracker,
)
from ipmg_shared.audit_cli import (
    AllowUnsignedTailOption,
    KeysOption,
    TrustBundleKeysOption,
    checked_bundle,
)
from ipmg_shared.bundles import BundleInvalid, bundle_events, read_manifest
from ipmg_shared.canonical import parse_instant
from ipmg_shared.events import JsonObject
from ipmg_shared.settings import get_settings

console = Console()


def events_until(bundle: Path, as_of: datetime) -> Iterator[JsonObject]:
    manifest = read_manifest(bundle)
    for source, entry in sorted((manifest.get("sources") or {}).items()):
        for event in bundle_events(bundle, source, entry):
            if parse_instant(str(event["recorded_at"])) <= as_of:
                yield event


def replayed_reports(bundle: Path, as_of: datetime) -> dict[str, list[dict[str, Any]]]:
    """Tracker, scorecards and meeting history as of ``as_of``, in their JSON form."""
    model: Model = model_from_envelopes(events_until(bundle, as_of))
    today = reference_day(as_of)
    return {
        "tracker": [row.model_dump(mode="json") for row in tracker(model.documents, today)],
        "scorecards": [card.model_dump(mode="json") for card in scorecards(model.documents, today)],
        "meetings": [row.model_dump(mode="json") for row in meeting_history(model.documents)],
    }


def replay(
    bundle: Annotated[Path, typer.Argument(help="An exported audit bundle")],
    as_of: Annotated[datetime, typer.Option(help="The instant (UTC if no zone is given)")],
    out: Annotated[
        Path | None, typer.Option(help="Write here: a .json file, or a folder for CSV files")
    ] = None,
    keys: KeysOption = None,
    trust_bundle_keys: TrustBundleKeysOption = False,
    allow_unsigned_tail: AllowUnsignedTailOption = False,
) -> None:
    """Replay a bundle's history up to an instant and show (or write) the tracker, the unit
    scorecards and the meeting history as they stood then."""
    from ipmg_shared.cli import CliError

    instant = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
    audits = checked_bundle(
        get_settings(),
        bundle,
        keys,
        trust_bundle_keys=trust_bundle_keys,
        allow_unsigned_tail=allow_unsigned_tail,
    )
    broken = [audit for audit in audits if not audit.ok]
    if broken:
        raise CliError(
            "the bundle does not verify, nothing replayed: "
            + "; ".join(f"{a.source}: {a.first_problem}" for a in broken)
        )
    try:
        reports = replayed_reports(bundle, instant)
    except BundleInvalid as error:
        raise CliError(str(error)) from error
    if out is None:
        _print(reports, instant)
    elif out.suffix == ".json":
        out.write_text(json.dumps({"as_of": instant.isoformat(), **reports}, indent=2) + "\n")
        console.print(f"reports as of {instant.isoformat()} written to {out}")
    else:
        out.mkdir(parents=True, exist_ok=True)
        for name, rows in reports.items():
            _write_csv(out / f"{name}.csv", rows)
        console.print(f"reports as of {instant.isoformat()} written to {out}/")


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = sorted({column for row in rows for column in row})
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})


def _cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text, never runs as a formula."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return spreadsheet_safe(value) if isinstance(value, str) else value


def _print(reports: dict[str, list[dict[str, Any]]], instant: datetime) -> None:
    console.print(f"[bold]As of {instant.isoformat()}[/bold]")
    _table(
        "Resolution tracker",
        reports["tracker"],
        ("number", "title", "status", "priority_area", "meeting_date", "quarter"),
    )
    _table(
        "Unit scorecards",
        reports["scorecards"],
        (
            "quarter",
            "unit",
            "actions_assigned",
            "completed",
            "in_progress",
            "blocked",
            "overdue",
            "on_time_completion_rate",
        ),
    )
    _table(
        "Meeting history",
        reports["meetings"],
        ("quarter", "date", "status", "host_unit", "occasion", "units_present"),
    )


def _table(title: str, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(
            *(
                shorten(
                    str(row.get(column) if row.get(column) is not None else ""), 60, placeholder="…"
                )
                for column in columns
            )
        )
    console.print(table)
