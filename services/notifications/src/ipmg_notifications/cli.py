"""``ipmg notifications …``: operator commands of the notifications service."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import typer

from ipmg_notifications.deliveries import requeue_failed
from ipmg_shared.db import connect
from ipmg_shared.settings import get_settings

cli = typer.Typer(no_args_is_help=True)


@cli.command("retry-failed")
def retry_failed(
    delivery: Annotated[
        list[UUID] | None, typer.Option(help="Only this delivery (repeatable); default: all")
    ] = None,
) -> None:
    """Send failed deliveries again, in a new round (the earlier failure stays recorded)."""
    from ipmg_shared.cli import run_async

    settings = get_settings()

    async def go() -> list[UUID]:
        connection = await connect(settings.service_dsn("notifications"), settings)
        try:
            return await requeue_failed(connection, delivery or [])
        finally:
            await connection.close()

    requeued = run_async(go())
    typer.echo(f"{len(requeued)} failed deliver{'y' if len(requeued) == 1 else 'ies'} requeued")
