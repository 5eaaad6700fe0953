"""Configuration by environment variables (pydantic-settings), one object per process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

WRITE_SOURCES = ("meetings", "resolutions", "notifications")
SERVICES = ("meetings", "resolutions", "notifications", "reporting")
DEFAULT_HTTP_PORTS = {
    "meetings": 8001,
    "resolutions": 8002,
    "notifications": 8003,
    "reporting": 8004,
}


@dataclass(frozen=True)
class TopicNames:
    """Topic and consumer-group names; a prefix keeps test runs apart from a running system."""

    prefix: str = "ipmg."

    def events(self, source: str) -> str:
        return f"{self.prefix}{source}.events"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}dead-letter"

    def retry(self, consumer: str) -> str:
        """Where `ipmg dlq replay` sends dead-lettered messages back to one consumer only."""
        return f"{self.prefix}retry.{consumer}"

    def group(self, consumer: str) -> str:
        return f"{self.prefix}{consumer}"


def secrets_dir_from_environment() -> str | None:
    """``IPMG_SECRETS_DIR``: a folder of secret files, one per setting (``ipmg_jwt_secret``)."""
    return os.environ.get("IPMG_SECRETS_DIR") or None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="IPMG_", extra="ignore", secrets_dir=secrets_dir_from_environment()
    )

    # Only "development" lets a process run on the public development defaults of its secrets
    # (ipmg_shared.secrets); `make up`, the local scripts and the tests set it, compose never.
    environment: Literal["development", "production"] = "production"

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("IPMG_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    # The PostgreSQL server's administrative URL: provisioning and migrations use it; each
    # service runs as its own least-privileged role in its own database.
    database_url: SecretStr = Field(
        default=SecretStr("postgresql://postgres:postgres@127.0.0.1:5432/postgres"),
        validation_alias=AliasChoices("IPMG_DATABASE_URL", "DATABASE_URL"),
    )
    database_prefix: str = "ipmg_"
    # One password per service role: a service holding its own cannot log in as another.
    meetings_db_password: SecretStr = SecretStr("ipmg-local-only-meetings")
    resolutions_db_password: SecretStr = SecretStr("ipmg-local-only-resolutions")
    notifications_db_password: SecretStr = SecretStr("ipmg-local-only-notifications")
    reporting_db_password: SecretStr = SecretStr("ipmg-local-only-reporting")
    # The auditor's role reads every write store's events and relay progress, nothing more.
    auditor_db_password: SecretStr = SecretStr("ipmg-local-only-auditor")
    jwt_secret: SecretStr = SecretStr("ipmg-local-development-signing-key-change-me")
    jwt_issuer: str = "ipmg-liaison"
    # Servers refuse a token whose exp - iat exceeds this, whoever signed it.
    token_max_lifetime_hours: float = Field(default=720.0, gt=0)
    # How often a service re-reads the revoked token ids, and how long it may go on with an
    # old list while its database does not answer (then it answers 503).
    token_revocation_refresh_s: float = Field(default=5.0, gt=0)
    token_revocation_max_stale_s: float = Field(default=60.0, gt=0)
    # An identity provider's tokens (RS256/ES256), verified against its JWKS, beside HS256.
    jwks_url: str = ""
    jwks_issuer: str = ""
    jwks_algorithms: tuple[str, ...] = ("RS256", "ES256")
    # Addresses whose X-Forwarded-For/-Proto are believed (a TLS proxy); "*" trusts everyone.
    trusted_proxies: str = "127.0.0.1"
    # The dashboard's cookie is Secure unless this says otherwise (plain-http test rigs).
    dashboard_cookie_secure: bool = True
    topic_prefix: str = "ipmg."
    topic_partitions: int = 1
    topic_replication_factor: int = 1
    http_host: str = "127.0.0.1"
    log_level: str = "INFO"
    log_json: bool = True
    pool_min_size: int = 1
    pool_max_size: int = 10
    pool_acquire_timeout_s: float = 10.0
    db_command_timeout_s: float = 30.0
    kafka_send_timeout_s: float = 30.0
    # How every Kafka client of this process authenticates: PLAINTEXT (local development) or
    # SASL with this process's own principal, so the broker's ACLs can hold it to its topics.
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    # With SASL_SSL: the CA bundle the brokers' certificates chain to (none: the system's CAs).
    kafka_ssl_cafile: Path | None = None
    relay_batch_size: int = 1000
    relay_poll_interval_s: float = 1.0
    consumer_max_attempts: int = 3
    max_request_bytes: int = 256 * 1024
    keys_dir: Path = Path.home() / ".local" / "state" / "ipmg" / "keys"
    checkpoint_interval_s: float = 900.0
    # The published key list auditors verify bundles against (``ipmg audit keys list``).
    audit_trusted_keys: Path | None = None
    # The fingerprint of the key that must have signed that list (``sha256:…``), when pinned.
    audit_key_list_signer: str = ""
    # `ipmg audit watch`: its HTTP port, its state file, how often it re-reads each store.
    audit_watch_port: int = 8005
    audit_watch_state: Path = Path.home() / ".local" / "state" / "ipmg" / "audit-watch.sqlite3"
    audit_watch_store_interval_s: float = Field(default=10.0, gt=0)
    # Processes a projection rebuild folds with, side by side; 0: one per CPU this process may
    # use (its affinity and its cgroup's CPU quota), at most one per partition.
    rebuild_workers: int = Field(default=0, ge=0, le=64)
    # Reporting's answers as of a past instant: folds at once (in threads, which share the
    # GIL: more than one buys no speed), folds kept, as-of requests a subject may make a minute.
    reporting_as_of_concurrency: int = Field(default=1, ge=1, le=64)
    reporting_as_of_cache_size: int = Field(default=16, ge=0)
    reporting_as_of_per_minute: int = Field(default=30, ge=1)

    @property
    def topics(self) -> TopicNames:
        return TopicNames(self.topic_prefix)

    def service_database(self, service: str) -> str:
        return f"{self.database_prefix}{service}"

    def service_role(self, service: str) -> str:
        return f"{self.database_prefix}{service}"

    def service_db_password(self, service: str) -> SecretStr:
        if service not in SERVICES:  # a test's or a benchmark's own database
            if not self.development:
                raise ValueError(f"unknown service {service!r}")
            return SecretStr(f"ipmg-local-only-{service}")
        password: SecretStr = getattr(self, f"{service}_db_password")
        return password

    @property
    def development(self) -> bool:
        return self.environment == "development"

    def admin_dsn(self, database: str | None = None) -> str:
        url = self.database_url.get_secret_value()
        return _with_database(url, database) if database else url

    def service_dsn(self, service: str) -> str:
        """The URL a running service uses: its own role, its own database, and the admin URL's
        query (``sslmode=verify-full&sslrootcert=…``), so TLS holds for every connection."""
        return self._role_dsn(
            self.service_role(service), self.service_db_password(service), service
        )

    @property
    def auditor_role(self) -> str:
        return f"{self.database_prefix}auditor"

    def auditor_dsn(self, source: str) -> str:
        """The URL an audit reads a write store with: the auditor's role, which only reads."""
        return self._role_dsn(self.auditor_role, self.auditor_db_password, source)

    def _role_dsn(self, role: str, password: SecretStr, service: str) -> str:
        parts = urlsplit(self.database_url.get_secret_value())
        host = parts.hostname or "127.0.0.1"
        port = f":{parts.port}" if parts.port else ""
        user = quote(role, safe="")
        secret = quote(password.get_secret_value(), safe="")
        netloc = f"{user}:{secret}@{host}{port}"
        database = "/" + self.service_database(service)
        return urlunsplit((parts.scheme, netloc, database, parts.query, ""))

    def kafka_client_options(self) -> dict[str, Any]:
        """Connection and authentication keyword arguments for every aiokafka client."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap_servers,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol == "PLAINTEXT":
            return options
        if not self.kafka_sasl_username:
            raise ValueError(
                f"IPMG_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs"
                " IPMG_KAFKA_SASL_USERNAME and IPMG_KAFKA_SASL_PASSWORD"
            )
        options |= {
            "sasl_mechanism": self.kafka_sasl_mechanism,
            "sasl_plain_username": self.kafka_sasl_username,
            "sasl_plain_password": self.kafka_sasl_password.get_secret_value(),
        }
        if self.kafka_security_protocol == "SASL_SSL":
            from aiokafka.helpers import create_ssl_context

            cafile = str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None
            options["ssl_context"] = create_ssl_context(cafile=cafile)
        return options

    def http_port(self, service: str) -> int:
        return DEFAULT_HTTP_PORTS[service]


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
