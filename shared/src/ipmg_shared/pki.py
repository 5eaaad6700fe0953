"""The deployment's own certificate authority: Kafka broker and PostgreSQL server certificates.

``ensure`` makes what is missing and renews what is near expiry, so it can run on every start.
The CA key stays in its own folder; the published folder holds, per consumer, only what that
consumer needs:

    public/ca.crt                          the trust bundle every client reads
    kafka/<host>/broker.p12, .password     a broker's key and chain (server and client)
    kafka/<host>/ca.crt
    postgres/server.crt, server.key        PostgreSQL's key (mode 0600, owned by its user)

A new CA (``new_ca``) joins the trust bundle beside the old one, and server certificates stay
as they are; once every client has the new bundle, ``renew`` reissues them from the new CA, and
``retire_old_cas`` drops the old one.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 397
RENEW_WITHIN_DAYS = 30
# Every broker certificate carries this OU; Kafka maps it to one principal, ipmg-broker.
BROKER_UNIT = "ipmg-kafka-broker"
BROKER_PRINCIPAL = "ipmg-broker"


@dataclass(frozen=True)
class PkiPlan:
    brokers: tuple[str, ...]
    postgres_hosts: tuple[str, ...]
    # Numeric owner of each consumer's key files ("kafka", "postgres"), set when run as root.
    owners: Mapping[str, int] = field(default_factory=dict)


@dataclass
class PkiReport:
    issued: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def ensure(
    ca_dir: Path,
    out_dir: Path,
    plan: PkiPlan,
    *,
    renew: bool = False,
    new_ca: bool = False,
    retire_old_cas: bool = False,
    now: dt.datetime | None = None,
) -> PkiReport:
    now = now or dt.datetime.now(dt.UTC)
    report = PkiReport()
    ca_key, ca_cert = _certificate_authority(ca_dir, now, new_ca=new_ca)
    if retire_old_cas:
        for old in (ca_dir / "previous").glob("*.crt"):
            old.unlink()
    trusted = [ca_cert, *_previous_cas(ca_dir, now)]
    bundle = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in trusted)
    _write(out_dir / "public" / "ca.crt", bundle, 0o644)
    for host in plan.brokers:
        folder = out_dir / "kafka" / host
        _write(folder / "ca.crt", bundle, 0o644)
        name = f"kafka/{host}"
        if renew or not _current(folder / "broker.crt", [host], trusted, now):
            key, cert = _leaf(ca_key, ca_cert, host, [host], now, unit=BROKER_UNIT)
            password = secrets.token_hex(24)
            store = pkcs12.serialize_key_and_certificates(
                host.encode(), key, cert, [ca_cert], _pkcs12_encryption(password)
            )
            owner = plan.owners.get("kafka")
            _write(folder / "broker.p12.password", password.encode(), 0o600, owner)
            _write(folder / "broker.p12", store, 0o600, owner)
            _write(folder / "broker.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)
            report.issued.append(name)
        else:
            report.kept.append(name)
    if plan.postgres_hosts:
        folder = out_dir / "postgres"
        _write(folder / "ca.crt", bundle, 0o644)
        hosts = list(plan.postgres_hosts)
        if renew or not _current(folder / "server.crt", hosts, trusted, now):
            key, cert = _leaf(ca_key, ca_cert, hosts[0], hosts, now, unit="ipmg-postgres")
            owner = plan.owners.get("postgres")
            _write(folder / "server.key", _pkcs8(key), 0o600, owner)
            chain = cert.public_bytes(serialization.Encoding.PEM)
            _write(folder / "server.crt", chain, 0o644, owner)
            report.issued.append("postgres")
        else:
            report.kept.append("postgres")
    return report


def _certificate_authority(
    ca_dir: Path, now: dt.datetime, *, new_ca: bool
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_file, cert_file = ca_dir / "ca.key", ca_dir / "ca.crt"
    if key_file.exists() and cert_file.exists():
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        if not new_ca and cert.not_valid_after_utc - now > dt.timedelta(days=LEAF_DAYS):
            return key, cert
        # Kept in the trust bundle while servers move to the new CA's certificates.
        serial = format(cert.serial_number, "x")
        _write(ca_dir / "previous" / f"{serial}.crt", cert_file.read_bytes(), 0o644)
    key = ec.generate_private_key(ec.SECP256R1())
    # Unique, so an old and a new CA trusted side by side never share a name.
    common_name = f"IPMG Liaison CA {now:%Y-%m-%d} {secrets.token_hex(4)}"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(name, name, key.public_key(), now, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(key_file, _pkcs8(key), 0o600)
    _write(cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return key, cert


def _previous_cas(ca_dir: Path, now: dt.datetime) -> list[x509.Certificate]:
    found = [
        x509.load_pem_x509_certificate(path.read_bytes())
        for path in sorted((ca_dir / "previous").glob("*.crt"))
    ]
    return [cert for cert in found if cert.not_valid_after_utc > now]


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    hosts: Iterable[str],
    now: dt.datetime,
    *,
    unit: str,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    ca_key_id = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), now, LEAF_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([_san(host) for host in hosts]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _current(
    cert_file: Path, hosts: list[str], trusted: list[x509.Certificate], now: dt.datetime
) -> bool:
    """Issued by a CA still trusted, for exactly these names, and not due for renewal. A new CA
    therefore leaves servers alone until ``renew``, once every client trusts it."""
    if not cert_file.exists():
        return False
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        any(cert.issuer == ca.subject and _signed_by(cert, ca) for ca in trusted)
        and set(names) == {_san(host) for host in hosts}
        and cert.not_valid_after_utc - now > dt.timedelta(days=RENEW_WITHIN_DAYS)
    )


def _signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: dt.datetime,
    days: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # clock skew between containers
        .not_valid_after(now + dt.timedelta(days=days))
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pkcs12_encryption(password: str) -> serialization.KeySerializationEncryption:
    # AES-256 and SHA-256: what Java 17's PKCS12 keystore reads, unlike the legacy RC2 default.
    return (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password.encode())
    )


def _write(path: Path, content: bytes, mode: int, owner: int | None = None) -> None:
    """Write beside, then rename: a reader never sees half a file, and no write permission on
    the old file (which may belong to another user) is needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as out:
        out.write(content)
    os.chmod(partial, mode)
    if owner is not None and owner != os.geteuid():
        os.chown(partial, owner, owner)
    os.replace(partial, path)
