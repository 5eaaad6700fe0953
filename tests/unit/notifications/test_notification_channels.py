"""What leaves by email and by webhook: headers, bodies, signatures, failures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import UUID

import httpx
import pytest

from ipmg_contracts.notifications import Channel, NotificationKind
from ipmg_notifications.channels import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    DeliveryError,
    OutgoingMessage,
    SmtpSender,
    WebhookRejected,
    WebhookSender,
    signature,
    signature_is_valid,
    verify_webhook,
)
from ipmg_notifications.settings import NotificationSettings
from ipmg_shared.actors import Unit

NOW = datetime(2016, 1, 16, 9, 30, tzinfo=UTC)
SETTINGS = NotificationSettings(
    smtp_sender="IPMG Secretariat <ipmg.secretariat@example.org>",
    webhook_keys={Unit.PUNJAB: "punjab-own-key", Unit.SINDH: "sindh-own-key"},
)
MESSAGE = OutgoingMessage(
    delivery_id=UUID("6f1c0f7e-0000-5000-8000-000000000001"),
    kind=NotificationKind.FEEDBACK_REMINDER,
    channel=Channel.EMAIL,
    unit=Unit.PUNJAB,
    person="IPMG Focal Person, Punjab",
    address="focal.punjab@example.org",
    subject="Reminder: feedback was due 15 January 2016",
    text="Dear IPMG Focal Person, Punjab,\n\nPlease give Punjab's position.",
    html="<p>Please give Punjab's position.</p>",
    cause_event_id=UUID("6f1c0f7e-0000-4000-8000-000000000002"),
    cause_type="ReminderIssued",
    correlation_id=UUID("6f1c0f7e-0000-4000-8000-000000000003"),
)
HOOK = OutgoingMessage(
    **{
        **MESSAGE.__dict__,
        "channel": Channel.WEBHOOK,
        "person": None,
        "address": "https://hooks.punjab.example.org/ipmg",
        "html": None,
    }
)


def test_an_email_has_text_and_html_and_carries_its_delivery_id() -> None:
    email = SmtpSender(SETTINGS).compose(MESSAGE, NOW)
    assert email["To"] == '"IPMG Focal Person, Punjab" <focal.punjab@example.org>'
    assert email["From"] == "IPMG Secretariat <ipmg.secretariat@example.org>"
    assert email["Subject"] == MESSAGE.subject
    assert email["Message-ID"] == f"<{MESSAGE.delivery_id}@notifications.ipmg-liaison>"
    assert email[DELIVERY_HEADER] == str(MESSAGE.delivery_id)
    assert email["X-IPMG-Kind"] == "feedback_reminder"
    assert email.get_content_type() == "multipart/alternative"
    plain = email.get_body(("plain",))
    html = email.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert "Punjab's position" in plain.get_content()


def test_the_signature_is_hmac_sha256_of_the_timestamp_and_the_exact_body() -> None:
    # A vector from `openssl dgst -sha256 -hmac key` over "1452936600." + the fox.
    fox = b"The quick brown fox jumps over the lazy dog"
    assert signature(b"key", fox, 1_452_936_600) == (
        "t=1452936600,v1=03c2e319f09ac4030e6ef6218555655e4a3205d6aedcb59f23b93194aaa8de54"
    )
    body = b'{"kind":"invitation"}'
    sent = signature(b"k", body, 1_452_936_600)
    assert signature_is_valid(b"k", body, sent, now=1_452_936_600 + 10)
    assert not signature_is_valid(b"k", body + b" ", sent, now=1_452_936_600)
    assert not signature_is_valid(b"other", body, sent, now=1_452_936_600)
    assert not signature_is_valid(b"k", body, "sha256=" + "0" * 64, now=1_452_936_600)


def test_a_replayed_webhook_with_an_old_timestamp_is_refused_by_the_receiver() -> None:
    body = b'{"kind":"invitation"}'
    sent = signature(b"k", body, 1_452_936_600)
    assert verify_webhook(b"k", body, sent, now=1_452_936_600 + 299) == 1_452_936_600
    with pytest.raises(WebhookRejected, match="301s off"):
        verify_webhook(b"k", body, sent, now=1_452_936_600 + 301)
    # Moving the timestamp forward breaks the signature: the time is part of what is signed.
    moved = sent.replace("t=1452936600", "t=1452936900")
    with pytest.raises(WebhookRejected, match="does not match"):
        verify_webhook(b"k", body, moved, now=1_452_936_900)


async def test_a_webhook_posts_signed_json_to_the_units_address() -> None:
    received: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        await WebhookSender(SETTINGS, client).send(HOOK, NOW)
    (request,) = received
    assert str(request.url) == HOOK.address
    assert request.headers[DELIVERY_HEADER] == str(HOOK.delivery_id)
    header = request.headers[SIGNATURE_HEADER]
    assert header.startswith(f"t={int(NOW.timestamp())},v1=")
    assert signature_is_valid(b"punjab-own-key", request.content, header, NOW.timestamp())
    # Each unit has its own key: Sindh's cannot have made (or check) Punjab's messages.
    assert not signature_is_valid(b"sindh-own-key", request.content, header, NOW.timestamp())
    document = json.loads(request.content)
    assert document["kind"] == "feedback_reminder"
    assert document["unit"] == "punjab"
    assert document["cause"] == {"event_id": str(HOOK.cause_event_id), "type": "ReminderIssued"}
    assert document["sent_at"] == "2016-01-16T09:30:00.000000Z"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (lambda request: httpx.Response(500), "HTTP 500"),
        (lambda request: httpx.Response(302, headers={"Location": "/elsewhere"}), "HTTP 302"),
        (
            lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused")),
            "ConnectError",
        ),
    ],
)
async def test_a_webhook_that_does_not_take_the_message_is_a_delivery_error(
    answer: object, reason: str
) -> None:
    transport = httpx.MockTransport(answer)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(DeliveryError, match=reason):
            await WebhookSender(SETTINGS, client).send(HOOK, NOW)
