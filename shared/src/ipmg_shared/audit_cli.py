"""``ipmg audit …``: verification of every write source's hash chain."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ipmg_shared.chain import ChainReport
from ipmg_shared.db import create_pool
from ipmg_shared.events import EventRegistry
from ipmg_shared.settings import WRITE_SOURCES, Settings, get_settings
from ipmg_shared.store import EventStore

audit_app = typer.Typer(help="Prove nothing was altered.", no_args_is_help=True)
console = Console()


async def verify_store(settings: Settings, source: str) -> ChainReport:
    pool = await create_pool(settings.admin_dsn(settings.service_database(source)), settings)
    try:
        return await EventStore(pool, source, EventRegistry()).verify_chain()
    finally:
        await pool.close()


@audit_app.command("verify")
def verify(
    source: Annotated[str | None, typer.Option(help="Only this write source")] = None,
) -> None:
    """Recompute every hash and link of each write source's event store."""
    from ipmg_shared.cli import CliError, run_async

    sources = [source] if source else list(WRITE_SOURCES)
    reports = [run_async(verify_store(get_settings(), name)) for name in sources]
    table = Table("source", "events", "head position", "head hash", "result")
    for report in reports:
        table.add_row(
            report.source,
            str(report.events),
            str(report.head_position),
            report.head_hash[:16],
            "ok" if report.ok else f"BROKEN at {report.first_break}",
        )
    console.print(table)
    broken = [report for report in reports if not report.ok]
    if broken:
        raise CliError("; ".join(f"{r.source}: {r.first_break}" for r in broken))
