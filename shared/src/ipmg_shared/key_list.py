"""The published key list: every source's public keys, each bound to its source, signed.

Auditors get this file out of band (and compare its fingerprints, printed by
``ipmg audit keys list``) and verify bundles against it, never only against the keys a bundle
carries. It is signed again at every key rotation by the key-list key, so an auditor who has
recorded that key's fingerprint can accept a later list without asking again.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ipmg_shared.canonical import canonical_bytes, format_instant
from ipmg_shared.checkpoints import (
    KEY_LIST_SIGNER,
    Keyring,
    fingerprint_of,
    key_id_of,
    public_pem,
)
from ipmg_shared.settings import Settings

KEY_LIST_FORMAT = "ipmg-key-list/1"
KEY_LIST_FILE = "published-keys.json"


class KeyListInvalid(Exception):
    """The key list cannot be trusted or read: said in one line."""


@dataclass(frozen=True)
class PublishedKey:
    key_id: str
    source: str
    public_key: str  # PEM

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(_load_public(self.public_key, self.key_id))


@dataclass(frozen=True)
class TrustedKeys:
    """Keys an auditor trusts, by key id, and where that trust comes from."""

    keys: dict[str, PublishedKey]
    origin: str
    signer_fingerprint: str = ""

    def pems(self) -> dict[str, str]:
        return {key_id: key.public_key for key_id, key in self.keys.items()}


def key_list_path(folder: Path) -> Path:
    return folder / KEY_LIST_FILE


def _load_public(pem: str, key_id: str) -> Ed25519PublicKey:
    try:
        public = serialization.load_pem_public_key(pem.encode())
    except ValueError as error:
        raise KeyListInvalid(f"key {key_id} is not a PEM public key") from error
    if not isinstance(public, Ed25519PublicKey) or key_id_of(public) != key_id:
        raise KeyListInvalid(f"key {key_id} is not the Ed25519 key its id names")
    return public


def _signed_part(document: dict[str, object]) -> bytes:
    return canonical_bytes({k: v for k, v in document.items() if k != "signature"})


def publish(keyring: Keyring) -> Path:
    """Sign the list of the folder's public keys (each bound to its source) and write it
    beside them; the key-list key is made on first use."""
    if keyring.active_key_id(KEY_LIST_SIGNER) is None:
        keyring.generate(KEY_LIST_SIGNER)
    signer_id, signer = keyring.signing_key(KEY_LIST_SIGNER)
    pems = keyring.public_keys()
    document: dict[str, object] = {
        "format": KEY_LIST_FORMAT,
        "published_at": format_instant(datetime.now(UTC)),
        "keys": [
            {"key_id": key_id, "source": source, "public_key": pems[key_id]}
            for key_id, source in sorted(keyring.sources_of_keys().items())
        ],
        "signer": {
            "key_id": signer_id,
            "public_key": public_pem(signer.public_key()),
        },
    }
    document["signature"] = base64.b64encode(signer.sign(_signed_part(document))).decode()
    path = key_list_path(keyring.folder)
    staged = path.with_suffix(".tmp")
    staged.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(staged, path)  # readers never see half a list
    return path


def is_current(keyring: Keyring) -> bool:
    """Whether the published list names exactly the folder's public keys and sources."""
    try:
        listed = load_key_list(key_list_path(keyring.folder))
    except KeyListInvalid:
        return False
    return {k: key.source for k, key in listed.keys.items()} == keyring.sources_of_keys()


def load_key_list(path: Path) -> TrustedKeys:
    """The keys of a published list whose signature holds; a folder means its list."""
    if path.is_dir():
        path = key_list_path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise KeyListInvalid(f"no key list at {path}: {error.strerror}") from error
    except ValueError as error:
        raise KeyListInvalid(f"{path} is not valid JSON") from error
    if not isinstance(document, dict) or document.get("format") != KEY_LIST_FORMAT:
        raise KeyListInvalid(f"{path} is not a {KEY_LIST_FORMAT} key list")
    try:
        signer = document["signer"]
        signer_key = _load_public(str(signer["public_key"]), str(signer["key_id"]))
        signer_key.verify(base64.b64decode(document["signature"]), _signed_part(document))
        keys = [
            PublishedKey(str(k["key_id"]), str(k["source"]), str(k["public_key"]))
            for k in document["keys"]
        ]
    except (KeyError, TypeError, ValueError, InvalidSignature) as error:
        raise KeyListInvalid(f"{path} is altered or incomplete: its signature fails") from error
    trusted: dict[str, PublishedKey] = {}
    for key in keys:
        _load_public(key.public_key, key.key_id)
        if key.key_id in trusted:
            raise KeyListInvalid(f"{path} binds key {key.key_id} twice")
        trusted[key.key_id] = key
    signer_fingerprint = fingerprint_of(signer_key)
    return TrustedKeys(trusted, f"{path} (signed by {signer_fingerprint})", signer_fingerprint)


def auditor_trusted_keys(settings: Settings, keys: Path | None) -> TrustedKeys | None:
    """The keys an auditor trusts: ``--keys``, else the configured trust store, else the
    keys folder's own published list; None when there is none. A list signed by another
    key than the pinned signer (``IPMG_AUDIT_KEY_LIST_SIGNER``) is refused."""
    if keys is not None:
        listed = load_key_list(keys)
    elif settings.audit_trusted_keys is not None:
        listed = load_key_list(settings.audit_trusted_keys)
    elif key_list_path(settings.keys_dir).is_file():
        listed = load_key_list(settings.keys_dir)
    else:
        return None
    pinned = settings.audit_key_list_signer
    if pinned and listed.signer_fingerprint != pinned:
        raise KeyListInvalid(
            f"the key list {listed.origin} is not signed by the pinned signer {pinned}"
        )
    return listed
