"""Each service as a real process: live, ready only when PostgreSQL and Kafka answer."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from ipmg_shared.actors import Unit
from ipmg_shared.settings import SERVICES, Settings
from tests.support.processes import private_kafka, running_service
from tests.support.tokens import focal_person, secretariat

pytestmark = pytest.mark.infra


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_is_live_and_ready(migrated: Settings, service: str, tmp_path: Path) -> None:
    with running_service(service, migrated, tmp_path) as process:
        process.wait_ready()
        live = httpx.get(f"{process.url}/health/live").json()
        ready = httpx.get(f"{process.url}/health/ready").json()
        assert live == {"status": "live", "service": service}
        assert ready["checks"] == {"database": "ok", "kafka": "ok"}
        assert httpx.get(f"{process.url}/no-such-page").status_code == 404
        metrics = httpx.get(f"{process.url}/metrics").text
        assert "ipmg_" in metrics
        # Requests by route template and exact status; unknown paths as one route ("none").
        live_route = 'handler="/health/live",method="GET",status="200"'
        assert f"ipmg_http_requests_total{{{live_route}}} 1.0" in metrics
        assert f"ipmg_http_request_duration_seconds_count{{{live_route}}} 1.0" in metrics
        assert 'ipmg_http_requests_total{handler="none",method="GET",status="404"} 1.0' in metrics
        assert httpx.get(f"{process.url}/openapi.json").json()["info"]["title"].endswith(service)
        # SIGTERM: uvicorn shuts down gracefully, then re-raises the signal for the exit status.
        assert process.stop() in (0, -signal.SIGTERM)
        assert '"event": "service_stopped"' in process.log_tail()


def wait_for_status(url: str, status: int, timeout: float = 60.0) -> httpx.Response | None:
    """The first response with ``status`` (the process may not listen yet); None on time-out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=10)
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code == status:
            return response
        time.sleep(0.5)
    return None


def test_readiness_names_kafka_while_it_is_down_and_recovers(
    migrated: Settings, tmp_path: Path
) -> None:
    with private_kafka() as broker:
        settings = migrated.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap})
        with running_service("meetings", settings, tmp_path) as service:
            service.wait_ready()
            broker.stop()
            down = wait_for_status(f"{service.url}/health/ready", 503)
            assert down is not None
            assert down.headers["content-type"] == "application/problem+json"
            assert down.json()["checks"] == {"database": "ok", "kafka": "unavailable"}
            assert "kafka" in down.json()["detail"]
            broker.start()
            assert wait_for_status(f"{service.url}/health/ready", 200) is not None


def test_a_service_started_while_kafka_is_down_becomes_ready_when_it_returns(
    migrated: Settings, tmp_path: Path
) -> None:
    with private_kafka() as broker:
        broker.stop()
        settings = migrated.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap})
        with running_service("reporting", settings, tmp_path) as service:
            assert wait_for_status(f"{service.url}/health/ready", 503, 30) is not None
            broker.start()
            assert wait_for_status(f"{service.url}/health/ready", 200, 90) is not None


def test_no_secret_reaches_the_logs(migrated: Settings, tmp_path: Path) -> None:
    """Tokens (good and forged), the signing key and database passwords never get logged."""

    tokens = [secretariat(migrated), focal_person(migrated, Unit.SINDH)]
    with running_service("meetings", migrated, tmp_path, IPMG_LOG_LEVEL="DEBUG") as service:
        service.wait_ready()
        for headers in [*tokens, {"Authorization": "Bearer forged.token.value"}]:
            httpx.post(f"{service.url}/meetings", json={"venue": "x"}, headers=headers)
            httpx.post(
                f"{service.url}/meetings",
                json={"scheduled_for": "2016-02-20", "host_unit": "punjab", "venue": "Lahore"},
                headers=headers,
            )
        log = service.log_path.read_text()
    assert "service_started" in log
    secrets = [
        migrated.jwt_secret.get_secret_value(),
        migrated.meetings_db_password.get_secret_value(),
        migrated.admin_dsn().split("@")[0].rsplit(":", 1)[-1],  # the admin password
        *(headers["Authorization"].removeprefix("Bearer ") for headers in tokens),
        "forged.token.value",
    ]
    for secret in secrets:
        assert secret not in log
