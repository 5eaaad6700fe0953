"""``ipmg reporting …``: rebuild the projection beside the live copy, and show its state."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from ipmg_shared.settings import get_settings

cli = typer.Typer(help="Reporting projections.", no_args_is_help=True)
console = Console()


class EventsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        speed = task.completed / elapsed if elapsed else None
        return Text(f"{speed:,.0f} events/s" if speed else "… events/s", style="progress.data")


class RichProgress:
    """Rebuild progress as a rich bar: events read, events/s, and the lag still to read."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def phase(self, name: str, total: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, lag=0)
            self.progress.stop_task(self.task)
        self.task = self.progress.add_task(name, total=max(total, 0), lag=total)

    def advance(self, events: int, remaining: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, advance=events, lag=remaining)


def rebuild_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        EventsPerSecond(),
        TextColumn("lag {task.fields[lag]:,}"),
        TimeElapsedColumn(),
        console=console,
    )


@cli.command("rebuild")
def rebuild(
    batch_size: Annotated[
        int, typer.Option(min=100, max=50_000, help="Events folded and written per batch")
    ] = 2000,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Processes folding shares of the partitions side by side "
            "[default: one per CPU, at most one per partition]",
        ),
    ] = None,
) -> None:
    """Rebuild the projections from offset 0 of the topics, beside the live copy.

    Queries keep being served meanwhile; once caught up the copies are swapped atomically
    and the old one is dropped.
    """
    from ipmg_reporting.rebuild import RebuildInProgress, rebuild_projection
    from ipmg_shared.cli import CliError, run_async
    from ipmg_shared.logging import configure_logging

    settings = get_settings()
    configure_logging("WARNING", settings.log_json)  # the bar says what happens
    with rebuild_bar() as bar:
        try:
            report = run_async(
                rebuild_projection(
                    settings, progress=RichProgress(bar), batch_size=batch_size, workers=workers
                )
            )
        except RebuildInProgress as error:
            raise CliError(str(error)) from error
    skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(report.skipped.items()))
    console.print(
        f"projection v{report.version} rebuilt and live: {report.events_read:,} events read, "
        f"{report.events_applied:,} applied, {report.documents:,} documents "
        f"in {report.seconds:.1f} s ({report.events_per_second:,.0f} events/s); "
        f"live consumer paused {report.paused_seconds:.2f} s for the last "
        f"{report.caught_up:,} events"
        + (
            f"; {report.parked:,} read before an earlier event of their stream, applied after it"
            if report.parked
            else ""
        )
        + (f"; skipped: {skipped}" if skipped else "")
    )


@cli.command("status")
def status() -> None:
    """The live projection's version and how far it has applied each source."""
    from ipmg_reporting.live import projection_status
    from ipmg_reporting.schema import SERVER_SETTINGS, SERVICE
    from ipmg_shared.cli import run_async
    from ipmg_shared.db import init_connection

    settings = get_settings()

    async def read() -> None:
        import asyncpg

        connection = await asyncpg.connect(
            settings.service_dsn(SERVICE),
            timeout=settings.pool_acquire_timeout_s,
            command_timeout=settings.db_command_timeout_s,
            server_settings=SERVER_SETTINGS,
            statement_cache_size=0,
        )
        try:
            await init_connection(connection)
            found = await projection_status(connection)
        finally:
            await connection.close()
        console.print(
            f"live projection v{found.version} (code v{found.code_version}), built "
            f"{found.built_at:%Y-%m-%d %H:%M:%S %Z}, {found.events_logged:,} events logged"
            if found.built_at
            else f"live projection v{found.version} (code v{found.code_version})"
        )
        for source in found.sources:
            console.print(
                f"  {source.source}: {source.events_applied:,} events applied, "
                f"up to position {source.last_position:,}"
            )

    run_async(read())
