"""Real processes for end-to-end and fault tests: a private Kafka broker that a test may kill,
and the services run exactly as `ipmg <service> run` runs them."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from ipmg_shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
IPMG = REPO / ".venv" / "bin" / "ipmg"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run_script(script: str, action: str, env: dict[str, str]) -> None:
    """One of deploy/local's scripts, as an operator runs it; its one-line error on failure."""
    done = subprocess.run(
        ["bash", str(REPO / "deploy" / "local" / script), action],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"{script} {action} failed: {done.stderr.strip()}")


@dataclass
class PrivateKafka:
    """A single-node broker of the test's own, started by the project's script."""

    port: int
    controller_port: int
    state_dir: Path
    admin_password: str | None = None  # set: SASL/SCRAM and the KRaft authorizer

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "IPMG_STATE_DIR": str(self.state_dir),
            "IPMG_KAFKA_PORT": str(self.port),
            "IPMG_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
        }
        env.pop("IPMG_KAFKA_ADMIN_PASSWORD", None)
        if self.admin_password:
            env["IPMG_KAFKA_ADMIN_PASSWORD"] = self.admin_password
        return env

    def start(self) -> None:
        run_script("kafka.sh", "start", self.env())

    def stop(self) -> None:
        run_script("kafka.sh", "stop", self.env())

    def kill(self) -> None:
        """kill -9, as a crash would."""
        pid = int((self.state_dir / "kafka" / "kafka.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)


@contextmanager
def private_kafka(
    admin_password: str | None = None, *, logs: Path | None = None
) -> Iterator[PrivateKafka]:
    """``logs``: the broker's log is copied there at the end (its state is deleted), beside
    the services' logs, to read after a failure."""
    with tempfile.TemporaryDirectory(prefix="ipmg-kafka-") as state:
        broker = PrivateKafka(free_port(), free_port(), Path(state), admin_password)
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()
            if logs is not None:
                # kafka.log.1 is the log before the last restart.
                for kept in sorted((broker.state_dir / "kafka").glob("kafka.log*")):
                    shutil.copy(kept, logs / f"kafka-{broker.port}-{kept.name}")


@dataclass
class PrivatePostgres:
    """A PostgreSQL server of the test's own, started by the project's script."""

    port: int
    state_dir: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres:postgres@127.0.0.1:{self.port}/postgres"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "IPMG_STATE_DIR": str(self.state_dir),
            "IPMG_PG_PORT": str(self.port),
            "DATABASE_URL": self.url,
        }

    def start(self) -> None:
        run_script("postgres.sh", "start", self.env())

    def stop(self) -> None:
        run_script("postgres.sh", "stop", self.env())


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    # /tmp, not a folder under /root: the server runs as the postgres OS user.
    state = Path(tempfile.mkdtemp(prefix="ipmg-pg-", dir="/tmp"))
    state.chmod(0o755)
    server = PrivatePostgres(free_port(), state)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", str(state)], check=False)


def service_env(settings: Settings, **overrides: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.admin_dsn(),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "IPMG_DATABASE_PREFIX": settings.database_prefix,
        "IPMG_TOPIC_PREFIX": settings.topic_prefix,
        "IPMG_RELAY_POLL_INTERVAL_S": str(settings.relay_poll_interval_s),
        "IPMG_LOG_LEVEL": "INFO",
    }
    env.update(overrides)
    return env


@dataclass
class ServiceProcess:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=3).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{self.name} not ready in {timeout} s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


@contextmanager
def running_service(
    name: str, settings: Settings, log_dir: Path, **env_overrides: str
) -> Iterator[ServiceProcess]:
    port = free_port()
    log_path = log_dir / f"{name}-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(IPMG), name, "run", "--port", str(port)],
            env=service_env(settings, **env_overrides),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    service = ServiceProcess(name, port, process, log_path)
    try:
        yield service
    finally:
        service.stop()
