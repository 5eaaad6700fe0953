"""The notifications service against real Kafka, PostgreSQL, SMTP and HTTP servers.

Upstream events are produced the way the write services produce them (their domains decide,
their event stores append, their relays publish); the notifications service runs in-process
exactly as ``ipmg notifications run`` wires it. What was sent is counted at the servers.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from prometheus_client import REGISTRY as METRICS

from ipmg_meetings import domain as meetings
from ipmg_notifications.channels import signature_is_valid
from ipmg_notifications.domain import long_date, quarter_bounds, quarter_of
from ipmg_notifications.settings import NotificationSettings
from ipmg_resolutions import domain as resolutions
from ipmg_shared.actors import Role, Unit
from ipmg_shared.auth import issue_token
from ipmg_shared.envelope import Envelope
from ipmg_shared.kafka_reader import read_topic
from ipmg_shared.settings import Settings
from tests.integration.notifications.support import (
    SECRETARIAT,
    WEBHOOK_SECRET,
    MovableClock,
    SmtpServer,
    Upstream,
    WebhookReceiver,
    directory_people,
    fast_settings,
    isolated_settings,
    mid_quarter,
    notifications_database,
    prepare_notifications,
    reset_consumer_offsets,
    running_notifications,
    write_directory,
)
from tests.support.processes import IPMG, service_env
from tests.support.waiting import wait_until

pytestmark = pytest.mark.infra

EVERYONE = ("member", "focal_person")
FOCAL = ("focal_person",)


@dataclass
class World:
    settings: Settings
    clock: MovableClock
    smtp: SmtpServer
    webhooks: WebhookReceiver
    upstream: Upstream
    directory: Path

    def notification_settings(self, **overrides: Any) -> NotificationSettings:
        return fast_settings(self.smtp, self.directory, **overrides)

    def addresses(self, units: Iterable[Unit], roles: Iterable[str]) -> Counter[str]:
        """One message to each person of ``units`` in ``roles``, read from the directory file."""
        wanted_units = {unit.value for unit in units}
        wanted_roles = set(roles)
        return Counter(
            person["email"]
            for person in directory_people(self.directory)
            if person["unit"] in wanted_units and person["role"] in wanted_roles
        )


@pytest.fixture
async def world(kafka: Settings, postgres: Settings, tmp_path: Path) -> AsyncIterator[World]:
    settings = isolated_settings(kafka)
    clock = MovableClock(mid_quarter(date.today()))
    smtp = SmtpServer()
    smtp.start()
    webhooks = WebhookReceiver()
    await webhooks.start()
    directory = write_directory(
        tmp_path / "directory.json",
        {Unit.PUNJAB: webhooks.url(Unit.PUNJAB), Unit.SINDH: webhooks.url(Unit.SINDH)},
    )
    await prepare_notifications(settings)
    upstream = Upstream(settings, clock)
    await upstream.start()
    try:
        yield World(settings, clock, smtp, webhooks, upstream, directory)
    finally:
        await upstream.stop()
        smtp.stop()
        await webhooks.stop()


async def deliveries_by_status(db: asyncpg.Connection) -> dict[str, int]:
    rows = await db.fetch("SELECT status, count(*) AS n FROM deliveries GROUP BY status")
    return {row["status"]: row["n"] for row in rows}


async def outcome_events(db: asyncpg.Connection) -> Counter[str]:
    rows = await db.fetch("SELECT type FROM events WHERE type LIKE 'Notification%'")
    return Counter(row["type"] for row in rows)


async def settled(db: asyncpg.Connection, total: int) -> bool:
    """``total`` deliveries planned and none of them waiting."""
    counts = await deliveries_by_status(db)
    return sum(counts.values()) == total and counts.get("pending", 0) == 0


async def test_a_realistic_history_reaches_the_expected_recipients_once(world: World) -> None:
    up, today = world.upstream, world.clock.today()
    punjab_actions = ("PB-1", "PB-2")
    async with running_notifications(
        world.settings, world.notification_settings(), world.clock
    ) as service:
        held = await up.schedule_meeting(today + timedelta(days=1), Unit.AJK, "Muzaffarabad")
        await up.meeting(
            meetings.RescheduleMeeting(
                actor=SECRETARIAT,
                at=world.clock(),
                meeting_id=held,
                scheduled_for=today,
                host_unit=Unit.AJK,
                venue="Chattar Palace, Muzaffarabad",
                reason="The hall was needed for the 16 Days of Activism opening",
            )
        )
        cancelled = await up.schedule_meeting(today + timedelta(days=90), Unit.SINDH, "Karachi")
        await up.meeting(
            meetings.CancelMeeting(
                actor=SECRETARIAT, at=world.clock(), meeting_id=cancelled, reason="Floods"
            )
        )
        await up.hold_meeting(held, today, Unit.AJK, "Chattar Palace, Muzaffarabad")
        resolution = await up.pass_and_circulate(
            held,
            today,
            Unit.AJK,
            number=1,
            responsible=(Unit.PUNJAB, Unit.SINDH, Unit.BALOCHISTAN),
            participants=(Unit.PUNJAB, Unit.SINDH, Unit.KHYBER_PAKHTUNKHWA, Unit.BALOCHISTAN),
            feedback_due=today + timedelta(days=10),
        )
        # Every participant answers: the round closes before its due day and approval follows.
        for unit in (Unit.PUNJAB, Unit.SINDH, Unit.KHYBER_PAKHTUNKHWA, Unit.BALOCHISTAN):
            await up.feedback(resolution, unit)
        base = {"actor": SECRETARIAT, "resolution_id": resolution}
        await up.resolution(resolutions.ApproveResolution(at=world.clock(), **base))
        await up.resolution(
            resolutions.SignResolution(
                at=world.clock(),
                signed_on=today,
                signatories=(
                    resolutions.Signatory(
                        name="Chairperson, NCSW", role="Chairperson", unit=Unit.NCSW
                    ),
                ),
                **base,
            )
        )
        await up.resolution(
            resolutions.AdoptActionPlan(
                at=world.clock(),
                quarter=f"{today.year}-Q{(today.month - 1) // 3 + 1}",
                actions=(
                    *(
                        resolutions.Action(
                            action_id=action_id,
                            unit=Unit.PUNJAB,
                            description=f"Punjab's task {action_id}",
                            due_on=today + timedelta(days=30),
                        )
                        for action_id in punjab_actions
                    ),
                    resolutions.Action(
                        action_id="BL-1",
                        unit=Unit.BALOCHISTAN,
                        description="Balochistan's own task",
                        due_on=today + timedelta(days=30),
                    ),
                ),
                **base,
            )
        )

        every_unit = list(Unit)
        expected = Counter[str]()
        for _ in range(4):  # scheduled, rescheduled; scheduled, cancelled
            expected += world.addresses(every_unit, EVERYONE)
        expected += world.addresses(
            [Unit.PUNJAB, Unit.SINDH, Unit.KHYBER_PAKHTUNKHWA, Unit.BALOCHISTAN], FOCAL
        )
        expected += world.addresses([Unit.PUNJAB, Unit.SINDH, Unit.BALOCHISTAN], EVERYONE)
        expected += world.addresses([Unit.PUNJAB, Unit.BALOCHISTAN], EVERYONE)
        expected_hooks = {"/hooks/punjab": 4 + 3, "/hooks/sindh": 4 + 2}
        total = expected.total() + sum(expected_hooks.values())

        async with notifications_database(world.settings) as db:
            await wait_until(lambda: settled(db, total), timeout=60)
            assert service.runtime.relay is not None
            relay = service.runtime.relay
            await wait_until(lambda: relay.published_position == total, timeout=30)
            await asyncio.sleep(1.0)  # anything extra would arrive now

            assert world.smtp.count_by_address() == expected
            assert sum(len(mail.recipients) for mail in world.smtp.mails) == expected.total()
            assert Counter(post.path for post in world.webhooks.posts) == expected_hooks
            assert await deliveries_by_status(db) == {"sent": total}
            assert await outcome_events(db) == {"NotificationSent": total}
            streams = await db.fetchval(
                "SELECT count(DISTINCT stream_id) FROM events WHERE type = 'NotificationSent'"
            )
            assert streams == total

        # The unit reads its own actions only; people's text is escaped in the HTML.
        focal_punjab = [
            mail for mail in world.smtp.mails if mail.recipients == ("focal.punjab@example.org",)
        ]
        (actions_mail,) = [mail for mail in focal_punjab if mail.kind == "actions_assigned"]
        assert all(action_id in actions_mail.text for action_id in punjab_actions)
        assert "Balochistan's own task" not in actions_mail.text
        (request_mail,) = [mail for mail in focal_punjab if mail.kind == "feedback_request"]
        assert "<its own> budget & staff" in request_mail.text
        assert "&lt;its own&gt; budget &amp; staff" in request_mail.html
        assert request_mail.message["Message-ID"].endswith("@notifications.ipmg-liaison>")

        # Webhooks carry an HMAC-SHA256 signature of the timestamp and the exact body.
        for post in world.webhooks.posts:
            sent_at = datetime.fromisoformat(post.document()["sent_at"]).timestamp()
            assert signature_is_valid(
                WEBHOOK_SECRET.encode(), post.body, post.headers["x-ipmg-signature"], sent_at
            )
            assert post.document()["unit"] == post.path.rsplit("/", 1)[1]

        # What was sent is published on the notifications topic, and listed over HTTP.
        topic = world.settings.topics.events("notifications")
        published = [Envelope.from_bytes(r.value) async for r in read_topic(world.settings, topic)]
        assert Counter(envelope.type for envelope in published) == {"NotificationSent": total}
        assert all(envelope.hash_is_valid for envelope in published)
        token = issue_token(
            world.settings, subject="focal.punjab", unit=Unit.PUNJAB, role=Role.FOCAL_PERSON
        )
        async with service.http() as http:
            answer = await http.get(
                "/notifications",
                params={"status": "sent", "limit": 1000},
                headers={"Authorization": f"Bearer {token}"},
            )
            refused = await http.get(
                "/notifications",
                params={"unit": "sindh"},
                headers={"Authorization": f"Bearer {token}"},
            )
            anonymous = await http.get("/notifications")
        assert answer.status_code == 200
        items = answer.json()["items"]
        assert {item["unit"] for item in items} == {"punjab"}
        assert len(items) == (
            sum(n for a, n in expected.items() if a.endswith(".punjab@example.org"))
            + expected_hooks["/hooks/punjab"]
        )
        assert refused.status_code == 403
        assert anonymous.status_code == 401


async def small_history(world: World) -> tuple[UUID, int]:
    """A meeting held and a resolution circulated to two units; returns it and the messages
    it calls for (everyone invited, and two focal persons with a webhook)."""
    up, today = world.upstream, world.clock.today()
    meeting = await up.schedule_meeting(today, Unit.PUNJAB, "Lahore")
    await up.hold_meeting(meeting, today, Unit.PUNJAB, "Lahore")
    resolution = await up.pass_and_circulate(
        meeting,
        today,
        Unit.PUNJAB,
        number=7,
        responsible=(Unit.PUNJAB,),
        participants=(Unit.PUNJAB, Unit.SINDH),
        feedback_due=today + timedelta(days=14),
    )
    emails = (
        world.addresses(list(Unit), EVERYONE).total()
        + world.addresses([Unit.PUNJAB, Unit.SINDH], FOCAL).total()
    )
    return resolution, emails + 2 + 2  # punjab and sindh hooks: invitation, request


def consumed(outcome: str) -> float:
    total = 0.0
    for source in ("meetings", "resolutions"):
        value = METRICS.get_sample_value(
            "ipmg_events_consumed_total",
            {"consumer": "notifications", "source": source, "outcome": outcome},
        )
        total += value or 0.0
    return total


async def test_forced_redelivery_sends_nothing_twice(world: World) -> None:
    upstream_events = 4  # scheduled, held; passed, circulated
    async with notifications_database(world.settings) as db:
        async with running_notifications(
            world.settings, world.notification_settings(), world.clock
        ):
            _, total = await small_history(world)
            await wait_until(lambda: settled(db, total), timeout=60)
        mails, posts = len(world.smtp.mails), len(world.webhooks.posts)
        assert mails + posts == total

        # The consumer restarts as if it had committed no offset: every event comes again
        # and its stream-version checkpoint absorbs them.
        await reset_consumer_offsets(world.settings, "notifications")
        duplicates_before = consumed("duplicate")
        async with running_notifications(
            world.settings, world.notification_settings(), world.clock
        ):
            await wait_until(
                lambda: consumed("duplicate") - duplicates_before >= upstream_events, timeout=60
            )
            await asyncio.sleep(1.0)
        assert (len(world.smtp.mails), len(world.webhooks.posts)) == (mails, posts)

        # Worse: the checkpoints are lost too (a rebuilt consumer). The handler runs again for
        # every event; the deliveries it plans exist already and nothing is sent.
        await db.execute("DELETE FROM consumer_streams")
        await db.execute("DELETE FROM consumer_sources")
        await reset_consumer_offsets(world.settings, "notifications")
        async with running_notifications(
            world.settings, world.notification_settings(), world.clock
        ):

            async def reapplied() -> bool:
                applied = await db.fetchval(
                    "SELECT coalesce(sum(events_applied), 0) FROM consumer_sources"
                )
                return bool(applied >= upstream_events)

            await wait_until(reapplied, timeout=60)
            await asyncio.sleep(1.0)
        assert (len(world.smtp.mails), len(world.webhooks.posts)) == (mails, posts)
        assert await deliveries_by_status(db) == {"sent": total}
        assert await outcome_events(db) == {"NotificationSent": total}


async def test_stopping_mid_send_records_what_the_server_took_and_resends_nothing(
    world: World,
) -> None:
    invited = world.addresses(list(Unit), EVERYONE)
    total = invited.total() + 2  # and the two webhooks
    world.smtp.handler.delay_s = 0.4
    async with notifications_database(world.settings) as db:
        async with running_notifications(
            world.settings, world.notification_settings(), world.clock
        ):
            await world.upstream.schedule_meeting(
                world.clock.today() + timedelta(days=20), Unit.PUNJAB, "Lahore"
            )
            await wait_until(
                lambda: db.fetchval(
                    "SELECT count(*) > 0 FROM deliveries "
                    "WHERE status = 'pending' AND lease_until IS NOT NULL"
                ),
                timeout=30,
                interval=0.02,
            )
        # Stopped with messages in flight: each one the server took is recorded as sent.
        emails_sent = await db.fetchval(
            "SELECT count(*) FROM deliveries WHERE channel = 'email' AND status = 'sent'"
        )
        assert 0 < len(world.smtp.mails) == emails_sent < invited.total()
        assert (
            await db.fetchval("SELECT count(*) FROM deliveries WHERE lease_until IS NOT NULL") == 0
        )

        world.smtp.handler.delay_s = 0.0
        async with running_notifications(
            world.settings, world.notification_settings(), world.clock
        ):
            await wait_until(lambda: settled(db, total), timeout=60)
            await asyncio.sleep(0.5)
        assert world.smtp.count_by_address() == invited
        assert await outcome_events(db) == {"NotificationSent": total}


async def test_smtp_down_fails_visibly_then_later_messages_flow(world: World) -> None:
    up, today = world.upstream, world.clock.today()
    invited = world.addresses(list(Unit), EVERYONE)
    hooks_per_meeting = 2
    async with (
        notifications_database(world.settings) as db,
        running_notifications(world.settings, world.notification_settings(), world.clock),
    ):
        await up.schedule_meeting(today + timedelta(days=30), Unit.SINDH, "Karachi")
        per_meeting = invited.total() + hooks_per_meeting
        await wait_until(lambda: settled(db, per_meeting), timeout=60)

        world.smtp.stop()
        await up.schedule_meeting(today + timedelta(days=40), Unit.PUNJAB, "Lahore")
        await wait_until(lambda: settled(db, 2 * per_meeting), timeout=60)
        failed = await db.fetch(
            "SELECT payload FROM events WHERE type = 'NotificationFailed' ORDER BY position"
        )
        assert len(failed) == invited.total()  # every email of the outage; webhooks went
        assert {row["payload"]["attempts"] for row in failed} == {3}
        assert all("SMTP" in row["payload"]["error"] for row in failed)
        assert {row["payload"]["cause_type"] for row in failed} == {"MeetingScheduled"}

        world.smtp.start()
        await up.schedule_meeting(today + timedelta(days=50), Unit.BALOCHISTAN, "Quetta")
        await wait_until(lambda: settled(db, 3 * per_meeting), timeout=60)
        assert world.smtp.count_by_address() == invited + invited
        assert await deliveries_by_status(db) == {
            "sent": 3 * per_meeting - invited.total(),
            "failed": invited.total(),
        }

        # Nothing was lost: the failed ones go again in a new round, once each.
        # (the operator's command, run as operators run it)
        done = await asyncio.to_thread(
            subprocess.run,
            [str(IPMG), "notifications", "retry-failed"],
            env=service_env(world.settings),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert done.stdout.strip() == f"{invited.total()} failed deliveries requeued"
        await wait_until(lambda: settled(db, 3 * per_meeting), timeout=60)
        await asyncio.sleep(1.0)
        assert world.smtp.count_by_address() == invited + invited + invited
        message_ids = [mail.message["Message-ID"] for mail in world.smtp.mails]
        assert len(set(message_ids)) == len(message_ids)
        assert await deliveries_by_status(db) == {"sent": 3 * per_meeting}
        histories = await db.fetch(
            "SELECT stream_id, array_agg(type ORDER BY stream_version) AS types FROM events "
            "WHERE type LIKE 'Notification%' GROUP BY stream_id"
        )
        shapes = Counter(tuple(row["types"]) for row in histories)
        assert shapes == {
            ("NotificationSent",): 3 * per_meeting - invited.total(),
            ("NotificationFailed", "NotificationSent"): invited.total(),
        }


async def test_clock_past_the_due_date_reminds_each_silent_unit_once(world: World) -> None:
    up, today = world.upstream, world.clock.today()
    due = today + timedelta(days=10)
    participants = (Unit.PUNJAB, Unit.SINDH, Unit.KHYBER_PAKHTUNKHWA, Unit.GILGIT_BALTISTAN)
    silent = [Unit.KHYBER_PAKHTUNKHWA, Unit.GILGIT_BALTISTAN]
    settings = world.notification_settings(reminder_lead_days=3, stale_after_days=7)
    async with (
        notifications_database(world.settings) as db,
        running_notifications(world.settings, settings, world.clock),
    ):
        meeting = await up.schedule_meeting(today, Unit.AJK, "Muzaffarabad")
        await up.hold_meeting(meeting, today, Unit.AJK, "Muzaffarabad")
        resolution = await up.pass_and_circulate(
            meeting,
            today,
            Unit.AJK,
            number=2,
            responsible=(Unit.PUNJAB,),
            participants=participants,
            feedback_due=due,
        )
        await up.feedback(resolution, Unit.PUNJAB)
        await up.feedback(resolution, Unit.SINDH)
        await wait_until(lambda: db.fetchval("SELECT count(*) = 2 FROM feedback_given"), timeout=60)
        await asyncio.sleep(1.0)  # several scheduler ticks before the reminder window
        assert await db.fetchval("SELECT count(*) FROM reminders") == 0

        world.clock.move_to(due + timedelta(days=1))
        await wait_until(lambda: db.fetchval("SELECT count(*) = 2 FROM reminders"), timeout=30)
        world.clock.move_to(due + timedelta(days=3))  # later ticks find them issued
        await asyncio.sleep(1.5)

        reminders = await db.fetch("SELECT payload FROM events WHERE type = 'ReminderIssued'")
        assert sorted(row["payload"]["unit"] for row in reminders) == sorted(
            unit.value for unit in silent
        )
        assert {row["payload"]["due_on"] for row in reminders} == {due.isoformat()}
        await wait_until(
            lambda: db.fetchval("SELECT count(*) = 0 FROM deliveries WHERE status = 'pending'")
        )
        reminded = world.smtp.count_by_address(kind="feedback_reminder")
        assert reminded == world.addresses(silent, FOCAL)
        (kp,) = [
            mail
            for mail in world.smtp.mails
            if mail.kind == "feedback_reminder" and mail.recipients == ("focal.kp@example.org",)
        ]
        assert f"was due on {long_date(due)} and has not been received" in kp.text

        # Early in the next quarter the secretariat gets its digest, once; the overdue
        # feedback is too old by then to be reminded again.
        _, next_quarter = quarter_bounds(quarter_of(due))
        world.clock.move_to(next_quarter + timedelta(days=1))
        await wait_until(lambda: db.fetchval("SELECT count(*) = 3 FROM reminders"), timeout=30)
        await asyncio.sleep(1.0)
        assert await db.fetchval("SELECT count(*) FROM reminders") == 3
        await wait_until(
            lambda: db.fetchval("SELECT count(*) = 0 FROM deliveries WHERE status = 'pending'")
        )
        digests = world.smtp.count_by_address(kind="quarterly_digest")
        assert digests == {"ipmg.secretariat@example.org": 1}
        assert world.smtp.count_by_address(kind="feedback_reminder") == reminded


async def test_history_replayed_or_already_past_sends_nothing(world: World) -> None:
    # The history was recorded upstream a month ago; this consumer sees it for the first time
    # (a new database, a rebuilt consumer): it learns the deadlines, and tells nobody.
    today = world.clock.today()
    world.clock.move_to(today - timedelta(days=30))
    _, total = await small_history(world)
    await wait_until(world.upstream.published, timeout=30)
    world.clock.move_to(today)
    invited = world.addresses(list(Unit), EVERYONE).total() + 2  # and two webhooks
    async with (
        notifications_database(world.settings) as db,
        running_notifications(world.settings, world.notification_settings(), world.clock),
    ):
        await wait_until(lambda: settled(db, total), timeout=60)
        # News today about a meeting whose day is over (history loaded in one go) is no news.
        await world.upstream.schedule_meeting(today - timedelta(days=1), Unit.SINDH, "Karachi")
        await wait_until(lambda: settled(db, total + invited), timeout=60)
        await asyncio.sleep(1.0)  # worker and scheduler ticks
        assert await deliveries_by_status(db) == {"suppressed": total + invited}
        assert await db.fetchval("SELECT count(*) FROM events") == 0
        assert await db.fetchval("SELECT count(*) FROM known_resolutions") == 1
    assert world.smtp.mails == []
    assert world.webhooks.posts == []
