"""deploy/local/*.sh against the real servers, run as the developer runs them (subprocesses).

Every failure path here uses its own state directory and free ports, so the running broker and
database that the rest of the suite uses are never touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "deploy" / "local"
OUR_VARS = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "JAVA_HOME")


def run(
    script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(LOCAL / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def isolated_env(tmp_path: Path) -> dict[str, str]:
    """Our own state dir and free ports; the shared jar cache is reused (no refetch)."""
    env = {k: v for k, v in os.environ.items() if k not in OUR_VARS and not k.startswith("IPMG_")}
    env["IPMG_STATE_DIR"] = str(tmp_path / "state")
    if "IPMG_CACHE_DIR" in os.environ:
        env["IPMG_CACHE_DIR"] = os.environ["IPMG_CACHE_DIR"]
    kafka, controller, pg = free_port(), free_port(), free_port()
    env["IPMG_KAFKA_PORT"] = str(kafka)
    env["IPMG_KAFKA_CONTROLLER_PORT"] = str(controller)
    env["IPMG_PG_PORT"] = str(pg)
    return env


@pytest.fixture
def squatter() -> Iterator[int]:
    """A plain TCP listener that accepts connections and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_up_is_idempotent_and_status_reports_both_running() -> None:
    up = run("infra.sh", "up", timeout=240)
    assert up.returncode == 0, up.stderr

    status = run("infra.sh", "status", timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    out = lines(status.stdout)
    assert len(out) == 2, out
    assert out[0].startswith("postgres: running"), out
    assert out[1].startswith("kafka: running"), out

    # The probe makes a real request and says so in one line.
    for target in ("kafka", "postgres"):
        probe = subprocess.run(
            ["uv", "run", "--frozen", "python", str(LOCAL / "probe.py"), target, "--once"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert probe.returncode == 0, probe.stderr
        assert "answers" in probe.stdout


def test_down_and_status_when_nothing_runs(isolated_env: dict[str, str]) -> None:
    down = run("infra.sh", "down", env=isolated_env, timeout=60)
    assert down.returncode == 0, down.stderr
    assert down.stderr == ""

    status = run("infra.sh", "status", env=isolated_env, timeout=60)
    assert status.returncode != 0
    out = lines(status.stdout)
    assert [line.split(":")[0] for line in out] == ["postgres", "kafka"], out
    assert all("not running" in line for line in out), out


def test_probe_fails_with_one_line_within_its_bound(isolated_env: dict[str, str]) -> None:
    started = time.monotonic()
    probe = subprocess.run(
        ["uv", "run", "--frozen", "python", str(LOCAL / "probe.py"), "kafka", "--timeout", "2"],
        cwd=ROOT,
        env=isolated_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 1
    err = lines(probe.stderr)
    assert len(err) == 1, err
    port = isolated_env["IPMG_KAFKA_PORT"]
    assert f"Kafka at 127.0.0.1:{port} did not answer within 2 s" in err[0]
    assert time.monotonic() - started < 15


def test_kafka_start_refuses_a_port_taken_by_something_else(
    isolated_env: dict[str, str], squatter: int
) -> None:
    env = {**isolated_env, "IPMG_KAFKA_PORT": str(squatter)}
    result = run("kafka.sh", "start", env=env, timeout=60)
    assert result.returncode != 0
    err = lines(result.stderr)
    assert len(err) == 1, err
    assert f"port {squatter}" in err[0]
    assert "IPMG_KAFKA_PORT" in err[0]
    assert not (Path(env["IPMG_STATE_DIR"]) / "kafka" / "kafka.pid").exists()


def test_postgres_start_refuses_a_port_taken_by_something_else(
    isolated_env: dict[str, str], squatter: int
) -> None:
    env = {**isolated_env, "IPMG_PG_PORT": str(squatter)}
    result = run("postgres.sh", "start", env=env, timeout=60)
    assert result.returncode != 0
    err = lines(result.stderr)
    assert len(err) == 1, err
    assert f"port {squatter}" in err[0]
    assert "IPMG_PG_PORT" in err[0]


def test_kafka_start_without_java_says_so_in_one_line(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    # A PATH with every program the machine has except java.
    farm = tmp_path / "bin"
    farm.mkdir()
    for directory in isolated_env["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            if entry.name != "java" and not (farm / entry.name).exists():
                (farm / entry.name).symlink_to(entry.path)
    env = {**isolated_env, "PATH": str(farm)}
    assert shutil.which("java", path=env["PATH"]) is None

    started = time.monotonic()
    result = run("kafka.sh", "start", env=env, timeout=60)
    assert result.returncode != 0
    err = lines(result.stderr)
    assert len(err) == 1, err
    assert "Java 17+ is required to run Kafka" in err[0]
    assert "apt-get install openjdk-17-jre-headless" in err[0]
    assert time.monotonic() - started < 15


def test_kafka_not_ready_in_time_fails_clearly_and_cleans_up(
    isolated_env: dict[str, str],
) -> None:
    env = {**isolated_env, "IPMG_KAFKA_START_TIMEOUT": "1"}
    result = run("kafka.sh", "start", env=env, timeout=90)
    assert result.returncode != 0
    err = lines(result.stderr)
    kafka_dir = Path(env["IPMG_STATE_DIR"]) / "kafka"
    assert "did not become ready within 1 s" in err[0]
    assert str(kafka_dir / "kafka.log") in err[0]
    assert not (kafka_dir / "kafka.pid").exists()
    # Nothing of ours is left running (the broker we started has been stopped).
    config = str(kafka_dir / "server.properties")
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            assert config.encode() not in cmdline


def _can_unshare_network() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    return (
        subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False).returncode == 0
    )


@pytest.mark.skipif(not _can_unshare_network(), reason="needs root and unshare -n")
def test_maven_without_network_says_the_registry_is_unreachable(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    # Empty jar cache and empty Maven repository, in a network namespace with no network.
    env = {
        **isolated_env,
        "IPMG_CACHE_DIR": str(tmp_path / "cache"),
        "MAVEN_OPTS": f"-Dmaven.repo.local={tmp_path / 'm2'}",
    }
    result = subprocess.run(
        ["unshare", "-n", "bash", str(LOCAL / "kafka.sh"), "start"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    err = lines(result.stderr)
    assert len(err) == 1, err
    assert "Maven could not reach its registry" in err[0]
    # A failed fetch leaves no half cache behind that would be taken for a complete one.
    version_dir = next((tmp_path / "cache").glob("kafka-*"))
    assert not (version_dir / ".complete").exists()
    assert not (version_dir / "libs").exists()
