"""The deployment CA: what the pki job issues, keeps, renews and stops trusting."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from ipmg_shared.pki import BROKER_UNIT, LEAF_DAYS, PkiPlan, ensure

PLAN = PkiPlan(brokers=("kafka", "kafka-2"), postgres_hosts=("postgres",))
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def bundle(out: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates((out / "public" / "ca.crt").read_bytes())


def certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def names(cert: x509.Certificate) -> list[str]:
    extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return [str(name) for name in extension.value.get_values_for_type(x509.DNSName)]


def test_the_first_run_issues_every_certificate_from_one_ca(tmp_path: Path) -> None:
    report = ensure(tmp_path / "ca", tmp_path / "out", PLAN, now=NOW)
    assert sorted(report.issued) == ["kafka/kafka", "kafka/kafka-2", "postgres"]
    [ca] = bundle(tmp_path / "out")
    server = certificate(tmp_path / "out" / "postgres" / "server.crt")
    server.verify_directly_issued_by(ca)
    assert names(server) == ["postgres"]
    key_file = tmp_path / "out" / "postgres" / "server.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    folder = tmp_path / "out" / "kafka" / "kafka-2"
    store = pkcs12.load_pkcs12(
        (folder / "broker.p12").read_bytes(), (folder / "broker.p12.password").read_bytes()
    )
    assert store.cert is not None
    assert store.key is not None
    store.cert.certificate.verify_directly_issued_by(ca)
    assert names(store.cert.certificate) == ["kafka-2"]
    unit = store.cert.certificate.subject.get_attributes_for_oid(
        x509.NameOID.ORGANIZATIONAL_UNIT_NAME
    )
    assert [attribute.value for attribute in unit] == [BROKER_UNIT]
    assert not (tmp_path / "out" / "ca.key").exists()
    assert not list((tmp_path / "out").rglob("ca.key"))


def test_a_second_run_keeps_what_is_current(tmp_path: Path) -> None:
    ensure(tmp_path / "ca", tmp_path / "out", PLAN, now=NOW)
    before = (tmp_path / "out" / "kafka" / "kafka" / "broker.p12").read_bytes()
    report = ensure(tmp_path / "ca", tmp_path / "out", PLAN, now=NOW + dt.timedelta(days=30))
    assert report.issued == []
    assert (tmp_path / "out" / "kafka" / "kafka" / "broker.p12").read_bytes() == before


def test_certificates_near_expiry_or_for_other_names_are_reissued(tmp_path: Path) -> None:
    ensure(tmp_path / "ca", tmp_path / "out", PLAN, now=NOW)
    late = NOW + dt.timedelta(days=LEAF_DAYS - 10)
    assert len(ensure(tmp_path / "ca", tmp_path / "out", PLAN, now=late).issued) == 3
    moved = PkiPlan(brokers=PLAN.brokers, postgres_hosts=("db.example.org",))
    assert ensure(tmp_path / "ca", tmp_path / "out", moved, now=late).issued == ["postgres"]
    assert names(certificate(tmp_path / "out" / "postgres" / "server.crt")) == ["db.example.org"]


def test_a_new_ca_is_trusted_beside_the_old_one_until_the_old_is_retired(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ensure(tmp_path / "ca", out, PLAN, now=NOW)
    [old] = bundle(out)
    # Step 1: clients learn the new CA; servers keep their certificates meanwhile.
    assert ensure(tmp_path / "ca", out, PLAN, new_ca=True, now=NOW).issued == []
    new, kept = bundle(out)
    assert kept == old
    assert new.subject != old.subject
    certificate(out / "postgres" / "server.crt").verify_directly_issued_by(old)
    assert ensure(tmp_path / "ca", out, PLAN, now=NOW).issued == []
    # Step 2: servers move to the new CA.
    assert len(ensure(tmp_path / "ca", out, PLAN, renew=True, now=NOW).issued) == 3
    certificate(out / "postgres" / "server.crt").verify_directly_issued_by(new)
    # Step 3: the old CA is no longer trusted.
    assert ensure(tmp_path / "ca", out, PLAN, retire_old_cas=True, now=NOW).issued == []
    assert bundle(out) == [new]
    assert bundle(out) == x509.load_pem_x509_certificates(
        (out / "kafka" / "kafka" / "ca.crt").read_bytes()
    )


def test_retiring_a_ca_reissues_what_it_still_vouched_for(tmp_path: Path) -> None:
    ensure(tmp_path / "ca", tmp_path / "out", PLAN, now=NOW)
    ensure(tmp_path / "ca", tmp_path / "out", PLAN, new_ca=True, now=NOW)
    report = ensure(tmp_path / "ca", tmp_path / "out", PLAN, retire_old_cas=True, now=NOW)
    assert len(report.issued) == 3
    [only] = bundle(tmp_path / "out")
    certificate(tmp_path / "out" / "postgres" / "server.crt").verify_directly_issued_by(only)
