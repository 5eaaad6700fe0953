"""Signed checkpoints: a write service signs its chain head with its own Ed25519 key.

Someone with database access but without the key can rewrite the whole chain consistently
(recomputing every hash), but cannot produce the signature over the old head that the
published checkpoint carries: the rewrite shows as a checkpoint that no longer matches.

Keys live in a folder (``IPMG_KEYS_DIR``), one sub-folder per source so that each service can
mount its own alone: ``<source>/<key_id>.key`` (private, PEM, 0600), ``<source>/<key_id>.pub``
(public, PEM) and ``<source>/active`` naming the key in use. Rotation adds a key and moves
``active``; old public keys stay, so old checkpoints still verify. Auditors trust the signed
list of public keys that ``key_list`` publishes, not the folder.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import Field

from ipmg_shared.canonical import canonical_bytes, format_instant
from ipmg_shared.events import DomainEvent, EventRegistry

CHECKPOINT_STREAM_PREFIX = "checkpoint-"
# The key that signs the published key list: kept beside the sources' keys, but no source's.
KEY_LIST_SIGNER = "key-list"
_FLAT_KEY_FILE = re.compile(r"(?P<source>[a-z0-9-]+)\.(?P<name>[0-9a-f]{16}\.(?:key|pub)|active)")


class ChainCheckpointSigned(DomainEvent):
    """The source's chain head at ``position`` was ``hash`` when ``key_id`` signed it."""

    event_type: ClassVar[str] = "ChainCheckpointSigned"
    source: str
    position: int = Field(ge=0)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    signed_at: datetime
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    signature: str  # base64 Ed25519 signature over signed_bytes()

    def signed_bytes(self) -> bytes:
        return checkpoint_bytes(self.source, self.position, self.hash, self.signed_at)


# Events every write service may publish besides its own; consumers pass them by.
SYSTEM_EVENTS = EventRegistry([ChainCheckpointSigned])


def checkpoint_bytes(source: str, position: int, head_hash: str, signed_at: datetime) -> bytes:
    return canonical_bytes(
        {
            "source": source,
            "position": position,
            "hash": head_hash,
            "signed_at": format_instant(signed_at),
        }
    )


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class KeyUnavailable(Exception):
    """A key is missing or unreadable: said in one line."""


@dataclass(frozen=True)
class Keyring:
    folder: Path

    def source_folder(self, source: str) -> Path:
        return self.folder / source

    def generate(self, source: str) -> str:
        """A new key for ``source``, made the active one; returns its id."""
        self.adopt_flat_layout()
        home = self.source_folder(source)
        home.mkdir(parents=True, exist_ok=True)
        private = Ed25519PrivateKey.generate()
        key_id = key_id_of(private.public_key())
        descriptor = os.open(home / f"{key_id}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(
                private.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        (home / f"{key_id}.pub").write_text(public_pem(private.public_key()))
        (home / "active").write_text(key_id + "\n")
        return key_id

    def adopt_flat_layout(self) -> None:
        """Move keys of the earlier flat layout (``<source>.<key_id>.key``) into their
        source's folder, so an existing deployment keeps its keys and their history."""
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.iterdir()):
            flat = _FLAT_KEY_FILE.fullmatch(path.name)
            if flat is not None and path.is_file():
                self.source_folder(flat["source"]).mkdir(exist_ok=True)
                path.rename(self.source_folder(flat["source"]) / flat["name"])

    def active_key_id(self, source: str) -> str | None:
        pointer = self.source_folder(source) / "active"
        return pointer.read_text().strip() if pointer.exists() else None

    def signing_key(self, source: str) -> tuple[str, Ed25519PrivateKey]:
        key_id = self.active_key_id(source)
        if key_id is None:
            raise KeyUnavailable(
                f"no signing key for {source} in {self.folder}: run `ipmg audit keys generate`"
            )
        try:
            loaded = serialization.load_pem_private_key(
                (self.source_folder(source) / f"{key_id}.key").read_bytes(), password=None
            )
        except (OSError, ValueError) as error:
            raise KeyUnavailable(f"the key {key_id} of {source} cannot be read: {error}") from error
        if not isinstance(loaded, Ed25519PrivateKey):
            raise KeyUnavailable(f"the key {key_id} of {source} is not an Ed25519 key")
        return key_id, loaded

    def sources_of_keys(self) -> dict[str, str]:
        """The source each public key in the folder belongs to, by key id."""
        if not self.folder.exists():
            return {}
        return {path.stem: path.parent.name for path in self._source_public_keys()}

    def public_keys(self) -> dict[str, str]:
        """Every public key in the folder (PEM text), by key id."""
        if not self.folder.exists():
            return {}
        return {path.stem: path.read_text() for path in self._source_public_keys()}

    def _source_public_keys(self) -> list[Path]:
        return [
            path
            for path in sorted(self.folder.glob("*/*.pub"))
            if path.parent.name != KEY_LIST_SIGNER
        ]


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def fingerprint_of(public: Ed25519PublicKey) -> str:
    """What people compare out of band; its first 16 hex digits are the key id."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def sign_checkpoint(
    source: str, position: int, head_hash: str, signed_at: datetime, keyring: Keyring
) -> ChainCheckpointSigned:
    key_id, private = keyring.signing_key(source)
    signature = private.sign(checkpoint_bytes(source, position, head_hash, signed_at))
    return ChainCheckpointSigned(
        source=source,
        position=position,
        hash=head_hash,
        signed_at=signed_at,
        key_id=key_id,
        signature=base64.b64encode(signature).decode(),
    )


def signature_is_valid(checkpoint: ChainCheckpointSigned, public_keys: dict[str, str]) -> bool:
    pem = public_keys.get(checkpoint.key_id)
    if pem is None:
        return False
    public = serialization.load_pem_public_key(pem.encode())
    if not isinstance(public, Ed25519PublicKey) or key_id_of(public) != checkpoint.key_id:
        return False
    try:
        public.verify(base64.b64decode(checkpoint.signature), checkpoint.signed_bytes())
    except (InvalidSignature, ValueError):
        return False
    return True
