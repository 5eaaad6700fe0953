from __future__ import annotations

from collections.abc import Iterator

import pytest

from ipmg_shared.settings import Settings
from tests.e2e.security.world import World, make_world
from tests.support.processes import ServiceProcess, running_service


@pytest.fixture(scope="session")
def services(
    write_services: dict[str, ServiceProcess],
    migrated: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, ServiceProcess]]:
    """All four services running as processes for the session."""
    logs = tmp_path_factory.mktemp("security-logs")
    with (
        running_service("notifications", migrated, logs) as notifications,
        running_service("reporting", migrated, logs) as reporting,
    ):
        notifications.wait_ready()
        reporting.wait_ready()
        yield {**write_services, "notifications": notifications, "reporting": reporting}


@pytest.fixture(scope="session")
async def world(services: dict[str, ServiceProcess], migrated: Settings) -> World:
    return await make_world(migrated, services["meetings"].url, services["resolutions"].url)
