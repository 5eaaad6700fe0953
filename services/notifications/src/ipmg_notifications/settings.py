"""The notifications service's own settings (prefix ``IPMG_NOTIFICATIONS_``).

The shared ``Settings`` hold what every service needs (database, Kafka, topics); these hold
what only this service knows about: its channels, its member directory, its reminders and
its retries.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ipmg_shared.actors import Unit
from ipmg_shared.secrets import keyed_problems
from ipmg_shared.settings import secrets_dir_from_environment

if TYPE_CHECKING:
    from ipmg_notifications.directory import Directory


def development_webhook_key(unit: str) -> str:
    """The public key a unit's webhooks are signed with in development, and only there."""
    return f"ipmg-local-webhook-key-{unit}-change-me"


class NotificationSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="IPMG_NOTIFICATIONS_",
        extra="ignore",
        secrets_dir=secrets_dir_from_environment(),
    )

    # None: the versioned directory shipped in the package (directory.json).
    directory_path: Path | None = None

    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_sender: str = "IPMG Secretariat <ipmg.secretariat@example.org>"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_use_tls: bool = False  # implicit TLS (usually port 465)
    smtp_start_tls: bool | None = None  # None: upgrade when the server offers STARTTLS
    smtp_timeout_s: float = Field(default=15.0, gt=0)

    # One HMAC key per receiving unit (JSON: {"punjab": "..."}), so a unit that knows its own
    # key cannot forge another unit's messages. A unit without one: the development key.
    webhook_keys: dict[Unit, SecretStr] = Field(default_factory=dict)
    # Receivers refuse a signature whose timestamp is older than this (docs/security.md).
    webhook_tolerance_s: int = Field(default=300, ge=1)
    webhook_timeout_s: float = Field(default=10.0, gt=0)

    # Retries of one delivery: exponential backoff with jitter, bounded in count and delay.
    max_attempts: int = Field(default=5, ge=1, le=100)
    retry_base_s: float = Field(default=2.0, gt=0)
    retry_max_s: float = Field(default=300.0, gt=0)
    # A claimed delivery whose worker vanished is taken again after this long.
    lease_s: float = Field(default=120.0, gt=0)
    worker_concurrency: int = Field(default=2, ge=1, le=32)
    poll_interval_s: float = Field(default=1.0, gt=0)

    # Feedback reminders start this many days before the due date.
    reminder_lead_days: int = Field(default=3, ge=0, le=90)
    # Messages are never sent late by more than this: an upstream event recorded earlier (a
    # replay of history, a rebuilt consumer) or a reminder whose day passed longer ago.
    stale_after_days: int = Field(default=7, ge=1, le=3650)
    scheduler_interval_s: float = Field(default=60.0, gt=0)
    # The calendar reminders and digests follow (the secretariat works in Pakistan time).
    timezone: str = "Asia/Karachi"

    def webhook_key(self, unit: Unit) -> bytes:
        key = self.webhook_keys.get(unit)
        text = key.get_secret_value() if key is not None else development_webhook_key(unit.value)
        return text.encode()

    @model_validator(mode="after")
    def _bounded_backoff(self) -> Self:
        if self.retry_max_s < self.retry_base_s:
            raise ValueError("retry_max_s must be at least retry_base_s")
        if self.lease_s <= max(self.smtp_timeout_s, self.webhook_timeout_s):
            raise ValueError("lease_s must be longer than a channel's timeout")
        return self


def webhook_key_problems(settings: NotificationSettings, directory: Directory) -> list[str]:
    """Each unit the directory sends webhooks to needs its own key outside development."""
    receiving: Iterable[str] = [
        entry.unit.value for entry in directory.units if entry.webhook_url is not None
    ]
    keys = {unit.value: key for unit, key in settings.webhook_keys.items()}
    return keyed_problems(
        "IPMG_NOTIFICATIONS_WEBHOOK_KEYS", keys, receiving, development_webhook_key
    )
