"""deploy/compose.yaml's Kafka security on a real broker, without Docker.

The compose launcher script (``x-kafka-launcher``) runs as written, its fixed paths mapped into
a sandbox, with certificates made by the pki job's own code (``ipmg_shared.pki``); the broker
then starts from the official jars with the properties the apache/kafka
image makes of the ``kafka`` service's environment (``KAFKA_FOO_BAR`` -> ``foo.bar``, ``__`` ->
``_``, ``___`` -> ``-``). The migrate job's commands set the users and ACLs, and a service
principal is held to its own topic: the JAAS file, listeners (SASL_SSL for clients, mutual TLS
for the controller), mechanisms, authorizer and the super user's bootstrap credential are the
compose file's own.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from pydantic import SecretStr

from ipmg_shared.kafka_acls import ADMIN_PRINCIPAL, USERS, service_principal
from ipmg_shared.pki import PkiPlan, ensure
from ipmg_shared.settings import Settings
from ipmg_shared.topics import admin_client
from tests.support.processes import IPMG, REPO, free_port
from tests.unit.deploy.test_compose import environment_of, kafka_launcher, rendered

pytestmark = pytest.mark.infra
CONTAINER_RUN_DIR = "/tmp/ipmg-kafka"  # noqa: S108 - the launcher's folder in the container
CONTAINER_PKI_DIR = "/etc/kafka/pki"
BROKER_HOST = "127.0.0.1"

# The image's start script, reduced to what matters here: environment to properties, then the
# broker. Kafka's own launch script would add its JVM options; KAFKA_OPTS carries the JAAS file.
IMAGE_RUN = """\
import os, sys
props = []
for key, value in os.environ.items():
    if key.startswith("KAFKA_") and not key.endswith("_OPTS"):
        name = key[6:].lower().replace("___", "-").replace("__", "\\0").replace("_", ".")
        props.append(name.replace("\\0", "_") + "=" + value)
path = os.path.join(os.environ["IPMG_SANDBOX"], "server.properties")
with open(path, "w") as out:
    out.write("\\n".join(props) + "\\n")
os.execvp("java", ["java", "-Xmx384m", os.environ["KAFKA_OPTS"], "-cp", sys.argv[1],
                   "kafka.Kafka", path])
"""


def kafka_libs() -> Path:
    version = re.search(
        r"<kafka.version>([^<]+)</kafka.version>", (REPO / "deploy/kafka/pom.xml").read_text()
    )
    assert version, "deploy/kafka/pom.xml names no Kafka version"
    cache = Path(os.environ.get("IPMG_CACHE_DIR", Path.home() / ".cache" / "ipmg"))
    libs = cache / f"kafka-{version[1]}" / "libs"
    assert libs.is_dir(), f"no Kafka jars in {libs}: `make up-infra` fetches them"
    return libs


@pytest.fixture(scope="module")
def compose_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """The compose ``kafka`` service as a local process; yields (bootstrap, admin password,
    the CA bundle clients trust)."""
    assert shutil.which("java"), "Java 17+ is required (apt-get install openjdk-17-jre-headless)"
    sandbox = tmp_path_factory.mktemp("compose-kafka")
    ensure(sandbox / "pki-ca", sandbox / "pki", PkiPlan(brokers=(BROKER_HOST,), postgres_hosts=()))
    broker_pki = str(sandbox / "pki" / "kafka" / BROKER_HOST)
    password = secrets.token_hex(16)
    (sandbox / "kafka_admin_password").write_text(password + "\n")
    storage_tool = sandbox / "kafka-storage.sh"
    storage_tool.write_text(
        f'#!/bin/bash\nexec java -cp "{kafka_libs()}/*" kafka.tools.StorageTool "$@"\n'
    )
    storage_tool.chmod(0o755)
    (sandbox / "image_run.py").write_text(IMAGE_RUN)
    script = (
        kafka_launcher()
        .replace("/run/secrets/kafka_admin_password", str(sandbox / "kafka_admin_password"))
        .replace(CONTAINER_RUN_DIR, str(sandbox / "run"))
        .replace("/opt/kafka/bin/kafka-storage.sh", str(storage_tool))
        .replace(
            "exec /etc/kafka/docker/run",
            f'exec {sys.executable} {sandbox / "image_run.py"} "{kafka_libs()}/*"',
        )
    )
    port, controller_port = free_port(), free_port()
    env = {
        key: value.replace(CONTAINER_PKI_DIR, broker_pki)
        for key, value in environment_of(rendered({})["services"]["kafka"]).items()
        if key != "KAFKA_HEAP_OPTS"
    }
    env |= {
        "KAFKA_LISTENERS": f"CLIENT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "KAFKA_ADVERTISED_LISTENERS": f"CLIENT://127.0.0.1:{port}",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": f"1@127.0.0.1:{controller_port}",
        "KAFKA_LOG_DIRS": str(sandbox / "data"),
        "KAFKA_OPTS": env["KAFKA_OPTS"].replace(CONTAINER_RUN_DIR, str(sandbox / "run")),
        "IPMG_SANDBOX": str(sandbox),
    }
    log = (sandbox / "broker.log").open("wb")
    process = subprocess.Popen(
        ["/bin/bash", "-c", script, "kafka-launcher"],
        env={"PATH": os.environ["PATH"], "HOME": str(sandbox), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield f"{BROKER_HOST}:{port}", password, sandbox / "pki" / "public" / "ca.crt"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        log.close()


def principal_settings(bootstrap: str, user: str, password: str, cafile: Path) -> Settings:
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_cafile=cafile,
        kafka_sasl_username=user,
        kafka_sasl_password=SecretStr(password),
        topic_prefix="compose.",
    )


async def wait_for_broker(settings: Settings, timeout: float = 90) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        admin = admin_client(settings)
        try:
            await asyncio.wait_for(admin.start(), 10)
            await admin.list_topics()
            return
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(1)
        finally:
            await admin.close()


async def test_the_compose_broker_holds_each_service_to_its_topic(
    compose_broker: tuple[str, str, Path], tmp_path: Path
) -> None:
    bootstrap, admin_password, cafile = compose_broker
    admin = principal_settings(bootstrap, ADMIN_PRINCIPAL, admin_password, cafile)
    await wait_for_broker(admin)
    passwords = {user: secrets.token_hex(16) for user in USERS}
    for user, password in passwords.items():
        (tmp_path / f"kafka_{user}_password").write_text(password)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "IPMG_TOPIC_PREFIX": admin.topic_prefix,
        "IPMG_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "IPMG_KAFKA_SSL_CAFILE": str(cafile),
        "IPMG_KAFKA_SASL_USERNAME": ADMIN_PRINCIPAL,
        "IPMG_KAFKA_SASL_PASSWORD": admin_password,
    }
    # The migrate job's Kafka commands, in its order.
    for command in (
        "topics create",
        f"kafka users apply --passwords-dir {tmp_path}",
        "kafka acls apply",
    ):
        process = await asyncio.create_subprocess_exec(
            str(IPMG),
            *command.split(),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, f"ipmg {command}: {output.decode()}"

    meetings = principal_settings(
        bootstrap, service_principal("meetings"), passwords["meetings"], cafile
    )
    producer = AIOKafkaProducer(
        **meetings.kafka_client_options(), acks="all", enable_idempotence=True
    )
    try:
        await asyncio.wait_for(producer.start(), 30)
        await asyncio.wait_for(producer.send_and_wait("compose.meetings.events", b"{}"), 20)
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(producer.send_and_wait("compose.resolutions.events", b"{}"), 20)
    finally:
        await producer.stop()


async def test_a_client_that_does_not_trust_the_deployment_ca_is_refused(
    compose_broker: tuple[str, str, Path], tmp_path: Path
) -> None:
    bootstrap, admin_password, cafile = compose_broker
    await wait_for_broker(principal_settings(bootstrap, ADMIN_PRINCIPAL, admin_password, cafile))
    stranger = ensure(tmp_path / "ca", tmp_path / "out", PkiPlan(brokers=(), postgres_hosts=()))
    assert stranger.issued == []
    other_ca = tmp_path / "out" / "public" / "ca.crt"
    producer = AIOKafkaProducer(
        **principal_settings(
            bootstrap, ADMIN_PRINCIPAL, admin_password, other_ca
        ).kafka_client_options(),
        request_timeout_ms=5000,
    )
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(producer.start(), 30)
    await producer.stop()


def test_the_launchers_admin_settings_reach_the_broker_over_tls(
    compose_broker: tuple[str, str, Path],
) -> None:
    """The client settings the launcher writes for the health check and the operators' Kafka
    tools (SASL_SSL, the PEM truststore), used by one of those tools."""
    bootstrap, admin_password, cafile = compose_broker
    asyncio.run(
        wait_for_broker(principal_settings(bootstrap, ADMIN_PRINCIPAL, admin_password, cafile))
    )
    admin_properties = cafile.parents[2] / "run" / "admin.properties"
    assert "security.protocol=SASL_SSL" in admin_properties.read_text()
    kafka_configs = ["java", "-Xmx128m", "-cp", f"{kafka_libs()}/*", "kafka.admin.ConfigCommand"]
    described = subprocess.run(
        [
            *kafka_configs,
            *("--bootstrap-server", bootstrap, "--command-config", str(admin_properties)),
            *("--describe", "--entity-type", "users", "--entity-name", ADMIN_PRINCIPAL),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert described.returncode == 0, described.stderr[-2000:]
    assert "SCRAM-SHA-512" in described.stdout
