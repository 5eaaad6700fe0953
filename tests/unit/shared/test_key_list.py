"""The published key list: signed, each key bound to its source, read back only when intact;
and the per-source key folders, into which the earlier flat layout is moved."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ipmg_shared.checkpoints import KEY_LIST_SIGNER, Keyring, key_id_of
from ipmg_shared.key_list import (
    KeyListInvalid,
    auditor_trusted_keys,
    is_current,
    key_list_path,
    load_key_list,
    publish,
)
from ipmg_shared.settings import Settings
from tests.support.processes import IPMG


def test_a_published_list_binds_each_key_to_its_source_and_reads_back(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path)
    meetings, resolutions = keyring.generate("meetings"), keyring.generate("resolutions")
    publish(keyring)

    listed = load_key_list(tmp_path)
    assert {k: key.source for k, key in listed.keys.items()} == {
        meetings: "meetings",
        resolutions: "resolutions",
    }
    assert listed.keys[meetings].fingerprint.startswith(f"sha256:{meetings}")
    assert KEY_LIST_SIGNER not in {key.source for key in listed.keys.values()}
    assert is_current(keyring)
    keyring.generate("meetings")  # a rotation the list does not name yet
    assert not is_current(keyring)


def test_each_source_has_a_folder_of_its_own(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path)
    key_id = keyring.generate("meetings")
    assert {p.name for p in (tmp_path / "meetings").iterdir()} == {
        "active",
        f"{key_id}.key",
        f"{key_id}.pub",
    }
    assert (tmp_path / "meetings" / f"{key_id}.key").stat().st_mode & 0o077 == 0
    # A service that mounts only its own folder still signs.
    assert Keyring(tmp_path).signing_key("meetings")[0] == key_id


@pytest.mark.parametrize(
    "tamper",
    [
        lambda doc: doc["keys"][0].update(source="resolutions"),
        lambda doc: doc["keys"].pop(),
        lambda doc: doc.update(signature=doc["signature"][::-1]),
    ],
)
def test_an_altered_list_is_refused(tmp_path: Path, tamper: object) -> None:
    keyring = Keyring(tmp_path)
    keyring.generate("meetings")
    keyring.generate("notifications")
    document = json.loads(publish(keyring).read_text())
    tamper(document)  # type: ignore[operator]
    key_list_path(tmp_path).write_text(json.dumps(document))
    with pytest.raises(KeyListInvalid, match="altered or incomplete"):
        load_key_list(tmp_path)


def test_keys_of_the_flat_layout_move_into_their_sources_folder(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    key_id = key_id_of(private.public_key())
    (tmp_path / f"meetings.{key_id}.key").write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / f"meetings.{key_id}.pub").write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (tmp_path / "meetings.active").write_text(key_id + "\n")
    keyring = Keyring(tmp_path)
    keyring.adopt_flat_layout()
    assert keyring.signing_key("meetings")[0] == key_id
    assert keyring.sources_of_keys() == {key_id: "meetings"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meetings"]


def ipmg(keys: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IPMG_KEYS_DIR": str(keys)}
    return subprocess.run(
        [str(IPMG), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_keys_list_prints_each_keys_source_and_fingerprint(tmp_path: Path) -> None:
    assert ipmg(tmp_path, "audit", "keys", "generate", "--missing-only").returncode == 0
    listed = load_key_list(tmp_path)
    done = ipmg(tmp_path, "audit", "keys", "list")
    assert done.returncode == 0, done.stderr
    for key in listed.keys.values():
        assert f"{key.source:<14} {key.key_id}  {key.fingerprint}  active" in done.stdout
    assert len(listed.keys) == 3
    unchanged = key_list_path(tmp_path).read_text()
    assert ipmg(tmp_path, "audit", "keys", "generate", "--missing-only").returncode == 0
    assert key_list_path(tmp_path).read_text() == unchanged  # nothing rotated: not re-signed

    (tmp_path / "meetings" / "active").write_text("0" * 16)
    key_list_path(tmp_path).write_text("{}")
    refused = ipmg(tmp_path, "audit", "keys", "list")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"ipmg: error: {key_list_path(tmp_path)} is not a ipmg-key-list/1 key list"
    )


def test_a_list_signed_by_another_than_the_pinned_signer_is_refused(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path)
    keyring.generate("meetings")
    publish(keyring)
    signer = load_key_list(tmp_path).signer_fingerprint
    pinned = Settings(keys_dir=tmp_path, audit_key_list_signer=signer)
    trusted = auditor_trusted_keys(pinned, None)
    assert trusted is not None
    assert trusted.signer_fingerprint == signer

    other = Settings(keys_dir=tmp_path, audit_key_list_signer="sha256:" + "0" * 64)
    with pytest.raises(KeyListInvalid, match="not signed by the pinned signer"):
        auditor_trusted_keys(other, None)
    assert auditor_trusted_keys(Settings(keys_dir=tmp_path / "none"), None) is None
