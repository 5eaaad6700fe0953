"""At rest, every write service's /metrics shows as many events appended as published: the
store counts each append, the HTTP commands' and the notifications service's own alike."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import date, timedelta
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ipmg_shared.settings import Settings
from ipmg_shared.topics import ensure_topics
from tests.integration.notifications.support import SmtpServer
from tests.support.meetings import extraordinary_meeting
from tests.support.processes import IPMG, ServiceProcess, running_service, service_env
from tests.support.tokens import secretariat
from tests.support.waiting import wait_until

pytestmark = pytest.mark.infra


async def samples(process: ServiceProcess, name: str) -> dict[str, float]:
    """The samples of ``name`` on the process's /metrics, by source."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{process.url}/metrics")).text
    return {
        sample.labels["source"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


async def at_rest(*processes: ServiceProcess) -> bool:
    """Each write service has appended events, and published as many as it appended."""
    for process in processes:
        appended = (await samples(process, "ipmg_events_appended_total")).get(process.name, 0.0)
        published = (await samples(process, "ipmg_events_published_total")).get(process.name, 0)
        if appended == 0 or appended != published:
            return False
    return True


async def test_appended_equals_published_on_every_write_service_at_rest(
    migrated: Settings, tmp_path: Path
) -> None:
    settings = migrated.model_copy(
        update={
            "database_prefix": f"{migrated.database_prefix}rest{uuid4().hex[:4]}_",
            "topic_prefix": f"{migrated.topic_prefix}rest{uuid4().hex[:4]}.",
        }
    )
    await asyncio.to_thread(
        subprocess.run,
        [str(IPMG), "migrate"],
        env=service_env(settings),
        check=True,
        timeout=120,
        capture_output=True,
    )
    await ensure_topics(settings)
    smtp = SmtpServer()
    smtp.start()
    try:
        with (
            running_service("meetings", settings, tmp_path) as meetings,
            running_service(
                "notifications",
                settings,
                tmp_path,
                IPMG_NOTIFICATIONS_SMTP_PORT=str(smtp.port),
                IPMG_NOTIFICATIONS_POLL_INTERVAL_S="0.2",
            ) as notifications,
        ):
            meetings.wait_ready()
            notifications.wait_ready()
            async with httpx.AsyncClient(timeout=20) as client:
                scheduled = await client.post(
                    f"{meetings.url}/meetings",
                    json=extraordinary_meeting(
                        (date.today() + timedelta(days=60)).isoformat(), "sindh", "Karachi"
                    ),
                    headers=secretariat(settings),
                )
            assert scheduled.status_code == 201, scheduled.text
            # The invitations are sent, and recorded by the notifications service itself.
            await wait_until(lambda: len(smtp.mails) > 0, timeout=60)
            await wait_until(lambda: at_rest(meetings, notifications), timeout=60)
            appended = await samples(notifications, "ipmg_events_appended_total")
            sent = appended["notifications"]
            assert sent >= len({mail.message["Message-ID"] for mail in smtp.mails})
    finally:
        smtp.stop()
