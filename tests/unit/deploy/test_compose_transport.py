"""deploy/compose.yaml's transport and supply chain: TLS to Kafka and PostgreSQL from the pki
job's CA, images pinnable by digest, and every container as hardened as its image allows."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.processes import IPMG
from tests.unit.deploy.test_compose import (
    DEPLOY,
    ENV_EXAMPLE,
    Json,
    environment_of,
    example_env,
    raw_compose,
    references,
    rendered,
    services,
    uses_project_image,
    variant,
)

PKI_TRUST = "/etc/ipmg/pki"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def mounts(service: Json) -> list[Any]:
    return list(service.get("volumes", []))


def pki_mount(service: Json, subpath: str) -> str | None:
    """Where the service mounts this part of the pki volume (read-only), if it does."""
    for mount in mounts(service):
        if (
            isinstance(mount, dict)
            and mount["source"] == "pki"
            and mount.get("volume", {}).get("subpath") == subpath
        ):
            assert mount["read_only"] is True
            return str(mount["target"])
    return None


def command_options(service: Json) -> dict[str, str]:
    """``-c name=value`` pairs of the postgres command."""
    command = service["command"]
    return dict(command[i + 1].split("=", 1) for i, word in enumerate(command) if word == "-c")


# --- TLS ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["defaults", ".env.example", "three brokers"])
def test_every_ipmg_container_reaches_kafka_and_postgres_over_verified_tls(name: str) -> None:
    for container, service in services(variant(name)).items():
        if not uses_project_image(service) or container == "pki":
            continue
        env = environment_of(service)
        assert pki_mount(service, "public") == PKI_TRUST, container
        assert env["IPMG_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", container
        assert env["IPMG_KAFKA_SSL_CAFILE"] == f"{PKI_TRUST}/ca.crt", container
        query = parse_qs(urlsplit(env["DATABASE_URL"]).query)
        assert query == {"sslmode": ["verify-full"], "sslrootcert": [f"{PKI_TRUST}/ca.crt"]}


def test_the_kafka_ui_trusts_the_deployment_ca() -> None:
    ui = services(rendered({}))["kafka-ui"]
    env = environment_of(ui)
    assert env["KAFKA_CLUSTERS_0_PROPERTIES_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_CLUSTERS_0_PROPERTIES_SSL_TRUSTSTORE_LOCATION"] == f"{PKI_TRUST}/ca.crt"
    assert pki_mount(ui, "public") == PKI_TRUST


@pytest.mark.parametrize("name", ["defaults", "three brokers"])
def test_each_broker_holds_its_own_certificate_which_the_pki_job_issues(name: str) -> None:
    compose = variant(name)
    pki_env = environment_of(services(compose)["pki"])
    issued = set(pki_env["IPMG_PKI_BROKERS"].split())
    for broker, service in services(compose).items():
        env = environment_of(service)
        if "KAFKA_NODE_ID" not in env:
            continue
        assert service["hostname"] in issued, broker
        folder = pki_mount(service, f"kafka/{service['hostname']}")
        assert folder is not None, broker
        assert env["KAFKA_SSL_KEYSTORE_LOCATION"] == f"{folder}/broker.p12"
        assert env["KAFKA_SSL_TRUSTSTORE_LOCATION"] == f"{folder}/ca.crt"
        assert service["depends_on"]["pki"]["condition"] == "service_completed_successfully"
    assert "postgres" in pki_env["IPMG_PKI_POSTGRES_HOSTS"].split()


def test_the_broker_health_check_asks_by_the_name_its_certificate_carries() -> None:
    # Host names are verified over TLS: 127.0.0.1 is not a name on the broker's certificate.
    for broker, service in services(rendered({})).items():
        if "KAFKA_NODE_ID" not in environment_of(service):
            continue
        check = service["healthcheck"]["test"][1]
        assert '--bootstrap-server "$(hostname)":9092' in check, broker
        assert service["hostname"] == broker


def test_the_pki_job_alone_holds_the_ca_key() -> None:
    compose = rendered({})
    for name, service in services(compose).items():
        holds = any(str(m).startswith("pki-ca:") for m in mounts(service))
        assert holds == (name == "pki"), name
    pki = services(compose)["pki"]
    assert pki["command"] == ["ipmg", "pki", "ensure"]
    assert environment_of(pki)["IPMG_PKI_CA_DIR"] == "/var/lib/ipmg/pki-ca"


def test_postgres_serves_tls_and_admits_network_clients_over_tls_only() -> None:
    postgres = services(rendered({}))["postgres"]
    options = command_options(postgres)
    folder = pki_mount(postgres, "postgres")
    assert options["ssl"] == "on"
    assert options["ssl_cert_file"] == f"{folder}/server.crt"
    assert options["ssl_key_file"] == f"{folder}/server.key"
    assert "./postgres/pg_hba.conf:" + options["hba_file"] + ":ro" in mounts(postgres)
    rules = [
        line.split()
        for line in (DEPLOY / "postgres" / "pg_hba.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for rule in rules:
        if rule[0] != "local":
            assert rule[0] == "hostssl" or rule[-1] == "reject", rule
            assert rule[-1] in {"scram-sha-256", "reject"}, rule
    assert ["hostnossl", "all", "all", "all", "reject"] in rules


# --- Images ------------------------------------------------------------------------------


def test_every_image_is_a_digest_or_a_pinnable_variable() -> None:
    pinnable = {name for name in example_env() if name.endswith("_IMAGE")}
    compose = raw_compose()
    for name, service in services(compose).items():
        image = service["image"]
        if DIGEST.search(image):
            continue
        [(variable, default)] = list(references(image))
        assert image == f"${{{variable}:-{default}}}", name
        assert variable in pinnable, f"{name}: {variable} is not in .env.example"
        assert example_env()[variable] == default, variable
    build_args = raw_compose()["x-ipmg-image"]["build"]["args"]
    for value in build_args.values():
        [(variable, _)] = list(references(value))
        assert variable in pinnable


@pytest.fixture
def fake_docker(tmp_path: Path) -> Path:
    """A `docker` that answers `buildx imagetools inspect` with a digest made of the name."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2 $3" = "buildx imagetools inspect" ] || exit 2\n'
        'echo "$4" >>"$FAKE_DOCKER_LOG"\n'
        'case "$4" in *missing*) echo "not found" >&2; exit 1 ;; esac\n'
        'printf "sha256:%s\\n" "$(printf %s "$4" | sha256sum | cut -c1-64)"\n'
    )
    docker.chmod(0o755)
    return bin_dir


def run_pin(env_file: Path, bin_dir: Path | None) -> subprocess.CompletedProcess[str]:
    path = f"{bin_dir}:/usr/bin:/bin" if bin_dir else "/usr/bin:/bin"
    return subprocess.run(
        ["bash", str(DEPLOY / "pin-images.sh"), str(env_file)],
        env={"PATH": path, "FAKE_DOCKER_LOG": str(env_file) + ".log"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_pin_images_rewrites_each_third_party_image_by_digest(
    tmp_path: Path, fake_docker: Path
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text())
    result = run_pin(env_file, fake_docker)
    assert result.returncode == 0, result.stderr
    pinned = {k: v for k, v in _env(env_file).items() if k.endswith("_IMAGE")}
    assert pinned["IPMG_IMAGE"] == example_env()["IPMG_IMAGE"]
    for name, value in pinned.items():
        if name != "IPMG_IMAGE":
            assert value.startswith(example_env()[name] + "@sha256:"), name
            assert DIGEST.search(value), name
    # Again: the tag is looked up afresh, never the digest already written.
    assert run_pin(env_file, fake_docker).returncode == 0
    assert _env(env_file) == {**example_env(), **pinned}
    asked = Path(str(env_file) + ".log").read_text().split()
    assert "@" not in "".join(asked)
    assert len(asked) == 2 * (len(pinned) - 1)
    assert env_file.read_text().count("\n#") == ENV_EXAMPLE.read_text().count("\n#")


def test_pin_images_stops_on_an_unknown_image_and_changes_nothing(
    tmp_path: Path, fake_docker: Path
) -> None:
    env_file = tmp_path / ".env"
    text = ENV_EXAMPLE.read_text().replace("apache/kafka:4.1.1", "apache/missing:4.1.1")
    env_file.write_text(text)
    result = run_pin(env_file, fake_docker)
    assert result.returncode != 0
    assert "cannot resolve apache/missing:4.1.1" in result.stderr
    assert env_file.read_text() == text


def test_pin_images_says_what_it_needs_without_docker(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    result = run_pin(env_file, None)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "pin-images: docker with buildx is required (docker buildx imagetools inspect)"
    ]
    assert not env_file.exists()


def _env(path: Path) -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if line and not line.startswith("#") and "=" in line
    )


# --- Hardening ---------------------------------------------------------------------------

# Containers that may run with a writable root, and why.
WRITABLE_ROOT = {
    # The apache/kafka image's start script writes the broker's configuration under
    # /opt/kafka/config before it starts the broker.
    "kafka",
    "kafka-2",
    "kafka-3",
}
# Capabilities a container adds back after dropping all, and why.
ADDED_CAPABILITIES = {"pki": {"CHOWN"}}  # gives each server's key to that server's user
RUNS_AS_ROOT = {"pki"}  # for CHOWN alone


@pytest.mark.parametrize("name", ["defaults", "three brokers"])
def test_every_container_is_hardened(name: str) -> None:
    for container, service in services(variant(name)).items():
        assert service.get("cap_drop") == ["ALL"], container
        assert set(service.get("cap_add", [])) == ADDED_CAPABILITIES.get(container, set())
        assert "no-new-privileges:true" in service.get("security_opt", []), container
        assert "/tmp" in service.get("tmpfs", []), container  # noqa: S108 - the container's
        assert service.get("read_only", False) == (container not in WRITABLE_ROOT), container
        assert "privileged" not in service, container


def test_containers_run_as_their_own_users_not_root() -> None:
    compose = rendered(example_env())
    for container, service in services(compose).items():
        user = str(service.get("user", ""))
        if container in RUNS_AS_ROOT:
            assert user == "0:0"
            continue
        if uses_project_image(service) or container in {"prometheus", "grafana", "kafka-ui"}:
            # The image's own non-root user (deploy/Dockerfile's USER; nobody, 472, kafkaui).
            assert user == "", container
            continue
        uid, _, gid = user.partition(":")
        assert uid.isdigit(), container
        assert int(uid) != 0, container
        assert gid == uid, container
    for variable in ("IPMG_POSTGRES_UID", "IPMG_KAFKA_UID"):
        assert (
            example_env()[variable] in environment_of(services(compose)["pki"])["IPMG_PKI_OWNERS"]
        )


def test_the_pin_script_is_executable() -> None:
    assert os.access(DEPLOY / "pin-images.sh", os.X_OK)


def run_pki_job(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(IPMG), "pki", "ensure"],
        env={"PATH": os.environ["PATH"], "HOME": env["IPMG_PKI_DIR"], **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_pki_job_issues_what_each_server_mounts(tmp_path: Path) -> None:
    compose = rendered({})
    env = {
        key: value
        for key, value in environment_of(services(compose)["pki"]).items()
        if key.startswith("IPMG_PKI_")
    }
    uid = os.geteuid()  # the compose owners need root; the layout is what is checked here
    env |= {
        "IPMG_PKI_CA_DIR": str(tmp_path / "ca"),
        "IPMG_PKI_DIR": str(tmp_path / "pki"),
        "IPMG_PKI_OWNERS": f"kafka={uid} postgres={uid}",
    }
    result = run_pki_job(env)
    assert result.returncode == 0, result.stderr
    for name, service in services(compose).items():
        for mount in mounts(service):
            if isinstance(mount, dict) and mount["source"] == "pki":
                folder = tmp_path / "pki" / mount["volume"]["subpath"]
                assert (folder / "ca.crt").is_file(), name
    postgres = command_options(services(compose)["postgres"])
    for option in ("ssl_cert_file", "ssl_key_file"):
        assert (tmp_path / "pki" / "postgres" / Path(postgres[option]).name).is_file()
    for broker in ("kafka", "kafka-2", "kafka-3"):
        kafka = environment_of(services(compose)[broker])
        stored = Path(kafka["KAFKA_SSL_KEYSTORE_LOCATION"]).name
        assert (tmp_path / "pki" / "kafka" / broker / stored).is_file()
        assert (tmp_path / "pki" / "kafka" / broker / f"{stored}.password").is_file()


def test_the_pki_job_refuses_a_malformed_owner_in_one_line(tmp_path: Path) -> None:
    result = run_pki_job(
        {
            "IPMG_PKI_CA_DIR": str(tmp_path / "ca"),
            "IPMG_PKI_DIR": str(tmp_path / "pki"),
            "IPMG_PKI_BROKERS": "kafka",
            "IPMG_PKI_OWNERS": "kafka=appuser",
        }
    )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "'kafka=appuser': expected kafka=UID or postgres=UID" in result.stderr
    assert not (tmp_path / "ca").exists()
