"""The notifications service killed (``kill -9``) while it sends a meeting's invitations.

Meetings of the future are scheduled under load, so each calls for an invitation to every
member in the directory; a slow SMTP server keeps messages in flight when the service dies.
After a restart every planned delivery is sent and recorded once (one ``NotificationSent`` in
the store and on the topic each), and the audit passes. The one thing a crash can repeat is
an email the server had taken before the service could record it: it is sent again with the
same ``Message-ID`` (the delivery's id), so the receiver can recognise it; the test counts
these and bounds them by the messages in flight.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from ipmg_shared.envelope import Envelope
from ipmg_shared.kafka_reader import read_topic
from ipmg_shared.settings import Settings
from tests.faults.conftest import check_audit, isolated, prepare, run_ipmg, stored_events
from tests.integration.notifications.support import SmtpServer
from tests.support.load import MeetingLoad
from tests.support.processes import running_service
from tests.support.tokens import secretariat
from tests.support.waiting import wait_until

CONCURRENCY = 2  # messages a notifications process has in flight at most
# Short leases and timeouts, so what the killed process had claimed is sent again soon.
NOTIFICATIONS_ENV = {
    "IPMG_NOTIFICATIONS_WORKER_CONCURRENCY": str(CONCURRENCY),
    "IPMG_NOTIFICATIONS_LEASE_S": "8",
    "IPMG_NOTIFICATIONS_SMTP_TIMEOUT_S": "3",
    "IPMG_NOTIFICATIONS_WEBHOOK_TIMEOUT_S": "3",
    "IPMG_NOTIFICATIONS_POLL_INTERVAL_S": "0.2",
    "IPMG_NOTIFICATIONS_RETRY_BASE_S": "0.1",
}


async def test_notifications_killed_mid_send_then_restarted(
    kafka: Settings, logs: Path, figures: dict[str, Any]
) -> None:
    settings = isolated(kafka, "killnoti")
    await prepare(settings)
    smtp = SmtpServer()
    smtp.handler.delay_s = 0.01  # a message takes a moment: some are in flight at the kill
    smtp.start()
    env = {**NOTIFICATIONS_ENV, "IPMG_NOTIFICATIONS_SMTP_PORT": str(smtp.port)}
    db = await asyncpg.connect(settings.service_dsn("notifications"))
    try:
        with (
            running_service("meetings", settings, logs) as meetings,
            running_service("notifications", settings, logs, **env) as notifications,
        ):
            meetings.wait_ready()
            notifications.wait_ready()
            load = MeetingLoad(
                meetings.url, secretariat(settings), clients=1, pause_s=0.4, year=2027
            )
            async with load:
                await wait_until(lambda: len(smtp.mails) >= 20, timeout=60, interval=0.05)
                assert notifications.stop(signal.SIGKILL) == -signal.SIGKILL
                mails_at_kill = len(smtp.mails)
                await asyncio.sleep(1)
                with running_service("notifications", settings, logs, **env) as restarted:
                    restarted.wait_ready()
                    await asyncio.sleep(3)
                    await load.stop()
                    accepted = len(load.report.accepted)
                    planned = await wait_until_all_sent(db, accepted)
        mails = Counter(str(mail.message["Message-ID"]) for mail in smtp.mails)
    finally:
        smtp.stop()
        await db.close()

    assert load.report.server_errors == 0, load.report.statuses
    deliveries = await sent_deliveries(settings)
    assert len(deliveries) == planned >= accepted * 20  # every member invited to each meeting
    # Every delivery reached the server, under its own Message-ID.
    assert set(mails) == {f"<{delivery}@notifications.ipmg-liaison>" for delivery in deliveries}
    repeated = sum(count - 1 for count in mails.values())
    assert repeated <= CONCURRENCY, mails.most_common(3)
    # Recorded once each: one NotificationSent per delivery, in the store and on the topic
    # (a reminder the scheduler issued meanwhile, e.g. a quarter's digest, is recorded too).
    stored = await stored_events(settings, "notifications")
    sent = [event for event in stored if event.type == "NotificationSent"]
    assert len(sent) == planned
    assert {event.stream_id for event in sent} == {f"notification-{d}" for d in deliveries}
    assert {event.type for event in stored} <= {"NotificationSent", "ReminderIssued"}
    # Every stored event on the topic, and nothing else. The relay, killed with the process,
    # may publish again what Kafka had taken before it could record that: such a copy is of a
    # stored event, and consumers skip it by its stream version.
    on_topic = Counter(
        [
            str(Envelope.from_bytes(record.value or b"").event_id)
            async for record in read_topic(settings, settings.topics.events("notifications"))
        ]
    )
    assert set(on_topic) == {event.event_id for event in stored}
    copies_on_topic = on_topic.total() - len(on_topic)
    done, _ = await run_ipmg(settings, "audit", "verify")
    audited = check_audit(
        done,
        {source: await stored_events(settings, source) for source in ("meetings", "notifications")},
    )
    figures["notifications_killed"] = {
        **load.report.figures(),
        "deliveries": planned,
        "mails_before_kill": mails_at_kill,
        "emails_received": sum(mails.values()),
        "emails_repeated_after_kill": repeated,
        "events_lost": 0,
        "duplicate_outcome_events": len(sent) - len({event.stream_id for event in sent}),
        "copies_on_topic": copies_on_topic,
        **audited,
    }


async def wait_until_all_sent(db: asyncpg.Connection, meetings: int) -> int:
    """Wait until every accepted meeting's invitations are planned and all are sent."""

    async def settled() -> bool:
        row = await db.fetchrow(
            "SELECT count(DISTINCT cause_event_id) FILTER (WHERE cause_type = 'MeetingScheduled')"
            " AS meetings, count(*) FILTER (WHERE status IN ('pending', 'failed')) AS open "
            "FROM deliveries"
        )
        assert row is not None
        return bool(row["meetings"] == meetings and row["open"] == 0)

    await wait_until(settled, timeout=120, interval=0.2)
    planned: int = await db.fetchval("SELECT count(*) FROM deliveries WHERE status = 'sent'")
    return planned


async def sent_deliveries(settings: Settings) -> list[str]:
    connection = await asyncpg.connect(settings.service_dsn("notifications"))
    try:
        rows = await connection.fetch(
            "SELECT delivery_id::text AS id FROM deliveries WHERE status = 'sent'"
        )
    finally:
        await connection.close()
    return [row["id"] for row in rows]
