"""``ipmg pki``: the deployment's certificate authority, run by compose's one-shot ``pki`` job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ipmg_shared.pki import BROKER_PRINCIPAL, PkiPlan, ensure

pki_app = typer.Typer(help="TLS certificates for Kafka and PostgreSQL.", no_args_is_help=True)


def _owners(pairs: list[str]) -> dict[str, int]:
    owners: dict[str, int] = {}
    for pair in pairs:
        consumer, _, uid = pair.partition("=")
        if consumer not in {"kafka", "postgres"} or not uid.isdigit():
            raise typer.BadParameter(f"{pair!r}: expected kafka=UID or postgres=UID")
        owners[consumer] = int(uid)
    return owners


@pki_app.command("ensure")
def pki_ensure(
    ca_dir: Annotated[
        Path, typer.Option(envvar="IPMG_PKI_CA_DIR", help="The CA's key and certificate.")
    ],
    out: Annotated[
        Path, typer.Option(envvar="IPMG_PKI_DIR", help="Where the certificates servers mount go.")
    ],
    broker: Annotated[
        list[str], typer.Option(envvar="IPMG_PKI_BROKERS", help="A broker's host name (repeat).")
    ],
    postgres_host: Annotated[
        list[str] | None,
        typer.Option(envvar="IPMG_PKI_POSTGRES_HOSTS", help="PostgreSQL's host name (repeat)."),
    ] = None,
    owner: Annotated[
        list[str] | None,
        typer.Option(envvar="IPMG_PKI_OWNERS", help="kafka=UID or postgres=UID: its key's owner."),
    ] = None,
    renew: Annotated[bool, typer.Option(help="Reissue every server certificate.")] = False,
    new_ca: Annotated[
        bool, typer.Option(help="Start a new CA; the old one stays trusted until retired.")
    ] = False,
    retire_old_cas: Annotated[
        bool, typer.Option(help="Stop trusting CAs replaced by --new-ca.")
    ] = False,
) -> None:
    """Make the CA and the server certificates that are missing or due; keep the rest."""
    plan = PkiPlan(
        brokers=tuple(broker),
        postgres_hosts=tuple(postgres_host or ()),
        owners=_owners(owner or []),
    )
    report = ensure(ca_dir, out, plan, renew=renew, new_ca=new_ca, retire_old_cas=retire_old_cas)
    for name in report.issued:
        typer.echo(f"issued {name}")
    for name in report.kept:
        typer.echo(f"kept {name}")
    typer.echo(f"brokers authenticate to each other's controller as User:{BROKER_PRINCIPAL}")
