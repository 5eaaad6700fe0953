"""The ``ipmg`` command. Its root lives here; each service adds ``ipmg <service> …`` through the
``ipmg.services`` entry-point group, so this package never imports a service."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from datetime import timedelta
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from ipmg_shared.actors import Role, Unit
from ipmg_shared.auth import ALL_AUDIENCES, audience_of, mint_token
from ipmg_shared.logging import configure_logging
from ipmg_shared.runtime import ServiceDefinition
from ipmg_shared.secrets import (
    InsecureSecrets,
    require_auditor_password,
    require_database_passwords,
    require_service_secrets,
    require_signing_key,
)
from ipmg_shared.settings import SERVICES, get_settings

T = TypeVar("T")
console = Console()
app = typer.Typer(
    name="ipmg",
    help="IPMG Liaison: run the services, migrate, seed, issue tokens, audit, operate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class CliError(Exception):
    """An expected failure: printed as one line, exit status 1."""


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@cache
def service_definitions() -> dict[str, ServiceDefinition]:
    found: dict[str, ServiceDefinition] = {}
    for entry in entry_points(group="ipmg.services"):
        definition = _service_definition(entry)
        found[definition.name] = definition
    return dict(sorted(found.items()))


def _service_definition(entry: EntryPoint) -> ServiceDefinition:
    definition = entry.load()
    if not isinstance(definition, ServiceDefinition) or definition.name != entry.name:
        raise CliError(f"entry point {entry.name} is not the ServiceDefinition of its name")
    return definition


def _chosen(service: str | None) -> list[ServiceDefinition]:
    definitions = service_definitions()
    if service is None:
        return list(definitions.values())
    if service not in definitions:
        raise CliError(f"unknown service {service!r}; known: {', '.join(definitions)}")
    return [definitions[service]]


@app.command()
def migrate(
    service: Annotated[str | None, typer.Option(help="Only this service")] = None,
) -> None:
    """Create each service's database and role if missing, then apply new migrations."""
    settings = get_settings()
    chosen = _chosen(service)
    _require(require_database_passwords, settings, [definition.name for definition in chosen])
    if any(definition.owns_event_store for definition in chosen):
        _require(require_auditor_password, settings)  # migrate grants it each store

    async def go() -> None:
        for definition in chosen:
            applied = await definition.migrate(settings)
            console.print(
                f"{definition.name}: {len(applied)} migration(s) applied"
                + (f" ({', '.join(applied)})" if applied else ", up to date")
            )

    run_async(go())


@app.command()
def asyncapi() -> None:
    """Print the AsyncAPI document of every event topic (JSON)."""
    import json

    from ipmg_shared.asyncapi import asyncapi_document
    from ipmg_shared.checkpoints import SYSTEM_EVENTS

    registries = {
        definition.name: definition.registry.merge(SYSTEM_EVENTS)
        for definition in service_definitions().values()
        if definition.registry is not None
    }
    settings = get_settings()
    document = asyncapi_document(
        registries,
        settings.topics,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        partitions=settings.topic_partitions,
        replicas=settings.topic_replication_factor,
    )
    typer.echo(json.dumps(document, indent=2))


topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")


@topics_app.command("create")
def topics_create() -> None:
    """Create the event, dead-letter and retry topics that do not exist yet."""
    from ipmg_shared.topics import ensure_topics

    created = run_async(ensure_topics(get_settings()))
    console.print(f"topics created: {', '.join(created)}" if created else "topics: up to date")


kafka_app = typer.Typer(help="Kafka principals and ACLs.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
users_app = typer.Typer(help="The SCRAM user of each service.", no_args_is_help=True)
kafka_app.add_typer(users_app, name="users")
acls_app = typer.Typer(help="What each principal may do.", no_args_is_help=True)
kafka_app.add_typer(acls_app, name="acls")


@users_app.command("apply")
def users_apply(
    passwords_dir: Annotated[
        Path, typer.Option(help="Folder of kafka_<user>_password files")
    ] = Path("/run/secrets"),
    service: Annotated[
        list[str] | None, typer.Option(help="Only this service or 'viewer' (repeatable)")
    ] = None,
) -> None:
    """Create the SCRAM-SHA-512 user of each service and the viewer, or set its password to
    its file's."""
    from ipmg_shared.kafka_acls import USERS, service_principal
    from ipmg_shared.kafka_admin import upsert_scram_users

    chosen = service or list(USERS)
    unknown = sorted(set(chosen) - set(USERS))
    if unknown:
        raise CliError(f"unknown Kafka user(s): {', '.join(unknown)}; known: {', '.join(USERS)}")
    passwords = {}
    for name in chosen:
        path = passwords_dir / f"kafka_{name}_password"
        try:
            passwords[service_principal(name)] = path.read_text().strip()
        except OSError as error:
            raise CliError(f"cannot read the Kafka password of {name}: {error}") from error
    users = run_async(upsert_scram_users(get_settings(), passwords))
    console.print(f"SCRAM users set: {', '.join(users)}")


@acls_app.command("apply")
def acls_apply() -> None:
    """Make the broker's ACLs for the system's principals those of ipmg_shared.kafka_acls."""
    from ipmg_shared.kafka_admin import apply_acls

    added, removed = run_async(apply_acls(get_settings()))
    for rule in added:
        console.print(f"added   {rule.describe()}")
    for rule in removed:
        console.print(f"removed {rule.describe()}")
    console.print(f"ACLs: {len(added)} added, {len(removed)} removed")


@acls_app.command("list")
def acls_list(
    broker: Annotated[bool, typer.Option(help="What the broker holds, not the code")] = False,
) -> None:
    """The ACL rules: as the code states them, or (--broker) as the broker holds them."""
    from ipmg_shared.kafka_acls import acl_rules

    if broker:
        from ipmg_shared.kafka_admin import service_acls

        rules = run_async(service_acls(get_settings()))
    else:
        rules = acl_rules(get_settings().topics)
    for rule in rules:
        typer.echo(rule.describe())


token_app = typer.Typer(help="Bearer tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("issue")
def token_issue(
    subject: Annotated[str, typer.Option(help="Who: e.g. an email address")],
    unit: Annotated[Unit, typer.Option(help="The member unit the person acts for")],
    role: Annotated[Role, typer.Option(help="secretariat, focal_person, auditor or service")],
    ttl_hours: Annotated[float, typer.Option(min=0.01, help="At most the servers' cap")] = 8.0,
    audience: Annotated[
        list[str] | None,
        typer.Option(help="A service the token is for (repeatable); default: all four"),
    ] = None,
) -> None:
    """Print a signed bearer token carrying subject, unit and role; its id goes to stderr."""
    settings = get_settings()
    _require(require_signing_key, settings)
    if ttl_hours > settings.token_max_lifetime_hours:
        raise CliError(
            f"--ttl-hours {ttl_hours:g} exceeds IPMG_TOKEN_MAX_LIFETIME_HOURS"
            f" ({settings.token_max_lifetime_hours:g}): the servers would refuse the token"
        )
    unknown = sorted(set(audience or ()) - set(SERVICES))
    if unknown:
        raise CliError(f"unknown audience(s): {', '.join(unknown)}; known: {', '.join(SERVICES)}")
    audiences = [audience_of(name) for name in audience] if audience else list(ALL_AUDIENCES)
    issued = mint_token(
        settings,
        subject=subject,
        unit=unit,
        role=role,
        ttl=timedelta(hours=ttl_hours),
        audiences=audiences,
    )
    typer.echo(issued.token)
    typer.echo(
        f"jti {issued.jti} · expires {issued.expires_at.isoformat(timespec='seconds')}"
        f" · for {', '.join(issued.audiences)}",
        err=True,
    )


@token_app.command("revoke")
def token_revoke(
    jti: Annotated[str, typer.Argument(help="The token's id (its jti claim)")],
    reason: Annotated[str, typer.Option(help="Why, kept beside the id")] = "",
) -> None:
    """Refuse a token everywhere: its id goes into every service's database, and each service
    refuses it within IPMG_TOKEN_REVOCATION_REFRESH_S seconds."""
    from ipmg_shared.token_cli import revoke_everywhere

    if not jti.strip() or len(jti) > 200:
        raise CliError("a token id (jti) of 1 to 200 characters is required")
    settings = get_settings()
    revoked = run_async(revoke_everywhere(settings, list(service_definitions()), jti, reason))
    console.print(f"token {jti} revoked in: {', '.join(revoked)}")


def _require(check: Callable[..., None], *arguments: Any) -> None:
    """A secrets check whose refusal is the CLI's one line."""
    try:
        check(*arguments)
    except InsecureSecrets as error:
        raise CliError(str(error)) from error


def _service_app(definition: ServiceDefinition) -> typer.Typer:
    service_app = typer.Typer(help=f"The {definition.name} service.", no_args_is_help=True)

    @service_app.command("run")
    def run(
        port: Annotated[int | None, typer.Option(help="HTTP port")] = None,
        host: Annotated[str | None, typer.Option(help="HTTP host")] = None,
    ) -> None:
        """Run the service: its Kafka consumers and relay, and its HTTP API."""
        import uvicorn

        from ipmg_shared.runtime import ServiceRuntime

        settings = get_settings()
        extra = definition.secret_problems(settings) if definition.secret_problems else []
        _require(require_service_secrets, settings, definition.name, extra)
        configure_logging(settings.log_level, settings.log_json)
        runtime = ServiceRuntime(definition, settings)
        uvicorn.run(
            runtime.http_app(),
            host=host or settings.http_host,
            port=port or settings.http_port(definition.name),
            log_level="warning",
            timeout_graceful_shutdown=20,
            # X-Forwarded-For/-Proto are believed from these addresses only (a TLS proxy).
            proxy_headers=True,
            forwarded_allow_ips=settings.trusted_proxies,
            # asyncio's own loop, not uvloop: on uvloop, a consumer group's member sometimes never
            # rejoined after the broker was killed and restarted (8 runs of 40 of the fault test;
            # 0 of 4 on asyncio): uvloop raises RuntimeError on a write to a closed transport,
            # which ends aiokafka's metadata task (see bench/README.md). Nothing lost matters
            # more than its 10-20% less CPU.
            loop="asyncio",
            http="httptools",  # the HTTP parser in C
        )

    if definition.cli is not None:
        service_app.add_typer(definition.cli, name=None)
    return service_app


def _add_operational_commands(first_argument: str | None) -> None:
    """Every command group; only the one service's for ``ipmg <service> …``.

    A service's process (``ipmg meetings run``) then starts without importing the other
    services and the operators' commands: half a second less CPU at every start.
    """
    services = {entry.name: entry for entry in entry_points(group="ipmg.services")}
    if first_argument in services:
        definition = _service_definition(services[first_argument])
        app.add_typer(_service_app(definition), name=definition.name)
        return
    from ipmg_shared.audit_cli import add_contributed_commands, audit_app
    from ipmg_shared.contracts_cli import contracts_app
    from ipmg_shared.dlq import dlq_app
    from ipmg_shared.pki_cli import pki_app

    app.add_typer(dlq_app, name="dlq")
    app.add_typer(pki_app, name="pki")
    app.add_typer(contracts_app, name="contracts")
    add_contributed_commands()
    app.add_typer(audit_app, name="audit")
    for definition in service_definitions().values():
        app.add_typer(_service_app(definition), name=definition.name)
    # Commands that belong to no single service (e.g. `ipmg seed`, which drives several).
    for entry in entry_points(group="ipmg.commands"):
        app.command(entry.name)(entry.load())


def main() -> None:
    try:
        _add_operational_commands(sys.argv[1] if len(sys.argv) > 1 else None)
        app(standalone_mode=False)
    except CliError as error:
        _fail(str(error))
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        _fail("aborted")
    except Exception as error:
        import click

        if isinstance(error, click.ClickException):
            _fail(error.format_message())
        _fail(_one_line(error))
    sys.exit(0)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    kind = type(error).__name__
    if isinstance(error, (ConnectionError, OSError)):
        return f"cannot reach a server ({kind}): {text or 'connection refused'}"
    return f"{kind}: {text}" if text else kind


def _fail(message: str) -> None:
    typer.echo(f"ipmg: error: {message}", err=True)
    sys.exit(1)
