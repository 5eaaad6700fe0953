"""The two ways a message leaves: email over SMTP (aiosmtplib) and signed webhooks (httpx).

A sender either returns (the server accepted the message) or raises ``DeliveryError`` with a
short reason; retrying is the delivery worker's business, not the sender's. Both stamp the
delivery id on what they send (``Message-ID`` and ``X-IPMG-Delivery``), so that a receiver
can drop the rare duplicate a crash between "accepted" and "recorded" produces.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Protocol
from uuid import UUID

import aiosmtplib
import httpx

from ipmg_contracts.notifications import Channel, NotificationKind
from ipmg_notifications.settings import NotificationSettings
from ipmg_shared.actors import Unit
from ipmg_shared.canonical import format_instant

SIGNATURE_HEADER = "X-IPMG-Signature"
DELIVERY_HEADER = "X-IPMG-Delivery"
MESSAGE_ID_DOMAIN = "notifications.ipmg-liaison"


@dataclass(frozen=True)
class OutgoingMessage:
    delivery_id: UUID
    kind: NotificationKind
    channel: Channel
    unit: Unit
    person: str | None
    address: str
    subject: str
    text: str
    html: str | None
    cause_event_id: UUID
    cause_type: str
    correlation_id: UUID


class DeliveryError(Exception):
    """The channel did not take the message (refused, unreachable, timed out)."""


class Sender(Protocol):
    async def send(self, message: OutgoingMessage, now: datetime) -> None: ...


Senders = Mapping[Channel, Sender]


class SmtpSender:
    def __init__(self, settings: NotificationSettings) -> None:
        self.settings = settings

    def compose(self, message: OutgoingMessage, now: datetime) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.settings.smtp_sender
        email["To"] = formataddr((message.person or "", message.address))
        email["Subject"] = message.subject
        email["Date"] = format_datetime(now)
        email["Message-ID"] = f"<{message.delivery_id}@{MESSAGE_ID_DOMAIN}>"
        email[DELIVERY_HEADER] = str(message.delivery_id)
        email["X-IPMG-Kind"] = message.kind.value
        email.set_content(message.text)
        if message.html is not None:
            email.add_alternative(message.html, subtype="html")
        return email

    async def send(self, message: OutgoingMessage, now: datetime) -> None:
        settings = self.settings
        # An empty password (an empty secret file) means no login.
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        password = password or None
        try:
            await aiosmtplib.send(
                self.compose(message, now),
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username,
                password=password,
                use_tls=settings.smtp_use_tls,
                start_tls=settings.smtp_start_tls,
                timeout=settings.smtp_timeout_s,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise DeliveryError(f"SMTP {type(error).__name__}: {error}"[:1000]) from error


def signature(key: bytes, body: bytes, timestamp: int) -> str:
    """The ``X-IPMG-Signature`` value: ``t=<unix seconds>,v1=<hex HMAC-SHA256>``, the HMAC
    taken over ``b"<t>." + body`` with the receiving unit's own key."""
    signed = f"{timestamp}.".encode() + body
    return f"t={timestamp},v1=" + hmac.new(key, signed, hashlib.sha256).hexdigest()


class WebhookRejected(Exception):
    """A received webhook whose signature is malformed, wrong, or too old (a replay)."""


def verify_webhook(
    key: bytes, body: bytes, header: str, now: float, tolerance_s: float = 300
) -> int:
    """What a receiver checks; returns the signed timestamp or raises ``WebhookRejected``."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError) as error:
        raise WebhookRejected("the signature has no timestamp") from error
    if not hmac.compare_digest(signature(key, body, timestamp), header.strip()):
        raise WebhookRejected("the signature does not match the body and timestamp")
    if abs(now - timestamp) > tolerance_s:
        raise WebhookRejected(f"the signature's timestamp is {now - timestamp:.0f}s off")
    return timestamp


def signature_is_valid(
    key: bytes, body: bytes, header: str, now: float, tolerance_s: float = 300
) -> bool:
    try:
        verify_webhook(key, body, header, now, tolerance_s)
    except WebhookRejected:
        return False
    return True


def webhook_body(message: OutgoingMessage, now: datetime) -> bytes:
    document = {
        "delivery_id": str(message.delivery_id),
        "kind": message.kind.value,
        "unit": message.unit.value,
        "subject": message.subject,
        "text": message.text,
        "cause": {"event_id": str(message.cause_event_id), "type": message.cause_type},
        "correlation_id": str(message.correlation_id),
        "sent_at": format_instant(now),
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookSender:
    """POSTs the message as JSON; any answer but 2xx is a failure."""

    def __init__(self, settings: NotificationSettings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._timeout_s = settings.webhook_timeout_s
        self._client = client

    async def send(self, message: OutgoingMessage, now: datetime) -> None:
        body = webhook_body(message, now)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(
                self._settings.webhook_key(message.unit), body, int(now.timestamp())
            ),
            DELIVERY_HEADER: str(message.delivery_id),
        }
        try:
            response = await self._client.post(
                message.address, content=body, headers=headers, timeout=self._timeout_s
            )
        except httpx.HTTPError as error:
            raise DeliveryError(f"webhook {type(error).__name__}: {error}"[:1000]) from error
        if not response.is_success:
            raise DeliveryError(f"webhook answered HTTP {response.status_code}")
