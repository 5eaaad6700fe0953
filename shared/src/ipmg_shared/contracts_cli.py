"""``ipmg contracts check|publish``: the published event contracts kept in the repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ipmg_shared.checkpoints import SYSTEM_EVENTS
from ipmg_shared.events import EventRegistry
from ipmg_shared.published_contracts import BreakingChange, contract_problems, publish

contracts_app = typer.Typer(help="The published event contracts.", no_args_is_help=True)
console = Console()
FOLDER = Path("contracts/published")
Folder = Annotated[Path, typer.Option("--folder", help="Where the published contracts are.")]


def every_registry() -> dict[str, EventRegistry]:
    """Each write service's own events by source, and the system events every source signs."""
    from ipmg_shared.cli import service_definitions

    registries = {
        definition.name: definition.registry
        for definition in service_definitions().values()
        if definition.registry is not None
    }
    return {**registries, "system": SYSTEM_EVENTS}


@contracts_app.command("check")
def check(folder: Folder = FOLDER) -> None:
    """Fail when a change breaks a published contract without a new schema version."""
    problems = contract_problems(folder, every_registry())
    for problem in problems:
        console.print(problem, highlight=False, soft_wrap=True)
    if problems:
        raise _failed(f"{len(problems)} published contract(s) broken")
    console.print("contracts: every published contract holds")


@contracts_app.command("publish")
def publish_contracts(folder: Folder = FOLDER) -> None:
    """Write the contract of each new schema version, and the growth of current ones."""
    try:
        written = publish(folder, every_registry())
    except BreakingChange as breaking:
        for problem in breaking.problems:
            console.print(problem, highlight=False, soft_wrap=True)
        raise _failed(
            "nothing published: a new schema_version and an upcaster are needed"
        ) from None
    for path in written:
        console.print(f"published {path}", highlight=False)
    if not written:
        console.print("contracts: up to date")


def _failed(message: str) -> Exception:
    from ipmg_shared.cli import CliError

    return CliError(message)
