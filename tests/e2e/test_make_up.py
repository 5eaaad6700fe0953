"""The README's first command: `make up` brings the system up with its sample history, and
`make down` leaves no process of ours behind."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ipmg_shared.settings import SERVICES, Settings
from tests.faults.conftest import isolated
from tests.support.processes import REPO, free_port, service_env

pytestmark = pytest.mark.infra


def make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_make_up_then_make_down(migrated: Settings, tmp_path: Path) -> None:
    ports = {service: free_port() for service in (*SERVICES, "audit_watch")}
    # A system of its own: the session's stores hold checkpoints signed with other keys.
    env = {
        **service_env(isolated(migrated, "makeup")),
        "IPMG_STATE_DIR": str(tmp_path / "state"),
        "IPMG_KEYS_DIR": str(tmp_path / "keys"),
        **{f"IPMG_{service.upper()}_PORT": str(port) for service, port in ports.items()},
        "IPMG_NOTIFICATIONS_SMTP_PORT": str(free_port()),
    }
    up = make("up", env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"dashboard      http://127.0.0.1:{ports['reporting']}/" in up.stdout
        assert "sample history:" in up.stdout
        for service, port in ports.items():
            ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=10)
            assert ready.status_code == 200, (service, ready.text)
        pids = [int(p.read_text()) for p in (tmp_path / "state" / "run").glob("*.pid")]
        assert len(pids) == len(ports) + 1  # and the local mail sink
        # The watch has verified every source up to its store's head.
        watch = f"http://127.0.0.1:{ports['audit_watch']}/metrics"
        deadline = time.monotonic() + 60
        while not verified_to_store_heads(metrics := httpx.get(watch, timeout=10).text):
            assert time.monotonic() < deadline, metrics
            time.sleep(1)
        assert (tmp_path / "state" / "audit-watch.sqlite3").exists()
    finally:
        down = make("down", env)
    assert down.returncode == 0, down.stderr
    assert not list((tmp_path / "state" / "run").glob("*.pid"))
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid), f"pid {pid} still runs"
    for port in ports.values():
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=2)


def verified_to_store_heads(metrics: str) -> bool:
    """Each source's verified position equals the store head of its last comparison."""
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name in ("ipmg_audit_verified_position", "ipmg_audit_store_head_position"):
                found.setdefault(sample.name, {})[sample.labels["source"]] = sample.value
    verified = found.get("ipmg_audit_verified_position", {})
    return bool(verified) and verified == found.get("ipmg_audit_store_head_position")


def _is_zombie(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
