from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipmg_shared.settings import Settings
from tests.support.processes import IPMG, ServiceProcess, running_service, service_env


@pytest.fixture(scope="session")
def migrated(postgres: Settings, kafka: Settings) -> Settings:
    subprocess.run(
        [str(IPMG), "migrate"],
        env=service_env(postgres),
        check=True,
        timeout=120,
        capture_output=True,
    )
    return kafka


@pytest.fixture(scope="session")
def write_services(
    migrated: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServiceProcess]]:
    """meetings and resolutions running as processes for the whole session."""
    logs = tmp_path_factory.mktemp("service-logs")
    with (
        running_service("meetings", migrated, logs) as meetings,
        running_service("resolutions", migrated, logs) as resolutions,
    ):
        meetings.wait_ready()
        resolutions.wait_ready()
        yield {"meetings": meetings, "resolutions": resolutions}


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    return tmp_path
