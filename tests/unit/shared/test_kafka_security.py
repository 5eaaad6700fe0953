"""Kafka client security settings, and the ACL model: what each service principal may do."""

from __future__ import annotations

import hmac
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from faststream.security import SASLScram512
from pydantic import SecretStr

from ipmg_notifications.main import build_service as build_notifications
from ipmg_reporting.main import subscriptions as reporting_subscriptions
from ipmg_resolutions.handlers import subscriptions as resolutions_subscriptions
from ipmg_shared.kafka_acls import (
    ADMIN_PRINCIPAL,
    CONSUMES,
    VIEWER,
    AclRule,
    Operation,
    ResourceType,
    acl_rules,
    principals,
    service_principal,
)
from ipmg_shared.kafka_admin import salted_password
from ipmg_shared.pki import PkiPlan, ensure
from ipmg_shared.runtime import broker_security
from ipmg_shared.settings import SERVICES, WRITE_SOURCES, Settings, TopicNames
from ipmg_shared.topics import topic_specs

SASL = {
    "kafka_security_protocol": "SASL_PLAINTEXT",
    "kafka_sasl_username": "ipmg-meetings",
    "kafka_sasl_password": SecretStr("s3cret"),
}


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    settings = Settings(kafka_bootstrap_servers="k:9092")
    assert settings.kafka_client_options() == {
        "bootstrap_servers": "k:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert broker_security(settings) is None


def test_sasl_options_carry_the_principal() -> None:
    options = Settings(**SASL).kafka_client_options()  # type: ignore[arg-type]
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "ipmg-meetings"
    assert options["sasl_plain_password"] == "s3cret"


def test_the_faststream_broker_gets_the_same_credentials() -> None:
    security = broker_security(Settings(**SASL))  # type: ignore[arg-type]
    assert isinstance(security, SASLScram512)
    assert (security.username, security.password, security.use_ssl) == (
        "ipmg-meetings",
        "s3cret",
        False,
    )


def test_sasl_ssl_verifies_the_broker() -> None:
    options = Settings(**{**SASL, "kafka_security_protocol": "SASL_SSL"}).kafka_client_options()  # type: ignore[arg-type]
    assert options["ssl_context"].check_hostname


def test_sasl_without_a_username_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="IPMG_KAFKA_SASL_USERNAME"):
        Settings(kafka_security_protocol="SASL_PLAINTEXT").kafka_client_options()


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPMG_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("IPMG_KAFKA_SASL_USERNAME", "ipmg-reporting")
    monkeypatch.setenv("IPMG_KAFKA_SASL_PASSWORD", "pw")
    settings = Settings()
    assert settings.kafka_client_options()["sasl_plain_username"] == "ipmg-reporting"
    assert "pw" not in repr(settings)


# --- the ACL model ----------------------------------------------------------------------------

TOPICS = TopicNames("ipmg.")


def writes(service: str) -> set[str]:
    return {
        rule.resource_name
        for rule in acl_rules(TOPICS)
        if rule.principal == service_principal(service) and rule.operation is Operation.WRITE
    }


def reads(service: str) -> set[str]:
    return {
        rule.resource_name
        for rule in acl_rules(TOPICS)
        if rule.principal == service_principal(service)
        and rule.operation is Operation.READ
        and rule.resource_type is ResourceType.TOPIC
    }


@pytest.mark.parametrize("source", WRITE_SOURCES)
def test_a_write_service_writes_only_its_own_event_topic(source: str) -> None:
    event_topics = {TOPICS.events(other) for other in WRITE_SOURCES}
    assert writes(source) & event_topics == {TOPICS.events(source)}


def test_reporting_writes_no_event_topic_and_no_retry_topic() -> None:
    assert writes("reporting") == {TOPICS.dead_letter}


def test_no_service_writes_a_retry_topic_only_the_administrator_replays() -> None:
    retry_topics = {TOPICS.retry(service) for service in SERVICES}
    assert all(not writes(service) & retry_topics for service in SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_a_consumer_reads_its_sources_its_retry_topic_in_its_own_group(service: str) -> None:
    sources = CONSUMES[service]
    expected = {TOPICS.events(source) for source in sources}
    if sources:
        expected.add(TOPICS.retry(service))
    assert reads(service) == expected
    groups = {
        rule.resource_name
        for rule in acl_rules(TOPICS)
        if rule.principal == service_principal(service) and rule.resource_type is ResourceType.GROUP
    }
    assert groups == ({TOPICS.group(service)} if sources else set())


def test_rules_follow_the_topic_prefix() -> None:
    names = {rule.resource_name for rule in acl_rules(TopicNames("test-1."))}
    assert all(name.startswith("test-1.") for name in names)


def test_every_rule_is_literal_allow_and_the_admin_needs_none() -> None:
    rules = acl_rules(TOPICS)
    assert len(rules) == len(set(rules))
    assert all(isinstance(rule, AclRule) for rule in rules)
    assert ADMIN_PRINCIPAL not in {rule.principal for rule in rules}
    assert principals() == [
        ADMIN_PRINCIPAL,
        *(f"ipmg-{service}" for service in SERVICES),
        f"ipmg-{VIEWER}",
    ]


def test_the_viewer_reads_every_topic_and_writes_nothing() -> None:
    rules = [r for r in acl_rules(TOPICS) if r.principal == service_principal(VIEWER)]
    operations = {r.operation for r in rules}
    assert operations == {Operation.READ, Operation.DESCRIBE_CONFIGS, Operation.DESCRIBE}
    read = {r.resource_name for r in rules if r.operation is Operation.READ}
    every_topic = {spec.name for spec in topic_specs(Settings())}
    assert read == every_topic


class _Context:
    def __init__(self) -> None:
        self.settings = Settings()
        self.extras: dict[str, object] = {}


def test_what_each_service_subscribes_to_is_allowed() -> None:
    """The code's subscriptions and the ACLs cannot drift apart unnoticed."""
    context = _Context()
    subscriptions = [
        *resolutions_subscriptions(context),  # type: ignore[arg-type]
        *reporting_subscriptions(context),  # type: ignore[arg-type]
        *build_notifications().subscriptions(context),  # type: ignore[arg-type]
    ]
    assert {s.consumer for s in subscriptions} == {"resolutions", "reporting", "notifications"}
    for subscription in subscriptions:
        assert set(subscription.topics) <= reads(subscription.consumer), subscription.consumer


def test_scram_salted_password_is_rfc_5802_hi_with_hmac_sha512() -> None:
    # Hi(str, salt, i) = U1 ^ ... ^ Ui, U1 = HMAC(str, salt + INT(1)), Uk = HMAC(str, Uk-1).
    password, salt, iterations = "pencil", b"QSXCR+Q6sek8bf92", 4096
    block = hmac.new(password.encode(), salt + b"\x00\x00\x00\x01", "sha512").digest()
    result = int.from_bytes(block, "big")
    for _ in range(iterations - 1):
        block = hmac.new(password.encode(), block, "sha512").digest()
        result ^= int.from_bytes(block, "big")
    assert salted_password(password, salt, iterations) == result.to_bytes(64, "big")


def test_sasl_ssl_trusts_the_configured_ca_file(tmp_path: Path) -> None:
    ensure(tmp_path / "ca", tmp_path / "out", PkiPlan(brokers=(), postgres_hosts=()))
    cafile = tmp_path / "out" / "public" / "ca.crt"
    settings = Settings(
        **{**SASL, "kafka_security_protocol": "SASL_SSL", "kafka_ssl_cafile": cafile}  # type: ignore[arg-type]
    )
    # Only the deployment's CA: a certificate from any public CA is not a broker of ours.
    ca_name = x509.load_pem_x509_certificate(cafile.read_bytes()).subject.rfc4514_string()
    security = broker_security(settings)
    assert security is not None
    contexts: list[ssl.SSLContext | None] = [
        settings.kafka_client_options()["ssl_context"],
        security.ssl_context,
    ]
    for context in contexts:
        assert context is not None
        [trusted] = context.get_ca_certs()
        assert trusted["subject"] == ((("commonName", ca_name.removeprefix("CN=")),),)
        assert context.check_hostname


def test_a_missing_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    settings = Settings(
        **{**SASL, "kafka_security_protocol": "SASL_SSL", "kafka_ssl_cafile": tmp_path / "none"}  # type: ignore[arg-type]
    )
    with pytest.raises(FileNotFoundError):
        settings.kafka_client_options()
