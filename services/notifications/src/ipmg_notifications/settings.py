"""The notifications service's own settings (prefix ``IPMG_NOTIFICATIONS_``).

The shared ``Settings`` hold what every service needs (database, Kafka, topics); these hold
what only this service knows about: its channels, its member directory, its reminders and
its retries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class NotificationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IPMG_NOTIFICATIONS_", extra="ignore")

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

    webhook_secret: SecretStr = SecretStr("ipmg-local-webhook-signing-key-change-me")
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

    @model_validator(mode="after")
    def _bounded_backoff(self) -> Self:
        if self.retry_max_s < self.retry_base_s:
            raise ValueError("retry_max_s must be at least retry_base_s")
        if self.lease_s <= max(self.smtp_timeout_s, self.webhook_timeout_s):
            raise ValueError("lease_s must be longer than a channel's timeout")
        return self
