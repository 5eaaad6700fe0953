"""The canonical encoding that event hashes are computed over.

Rules (fixed forever; test vectors in ``tests/unit/shared/test_canonical.py``):

- JSON (RFC 8259) encoded as UTF-8, object keys sorted by code point, no insignificant
  whitespace, non-ASCII characters written as themselves (not ``\\u`` escapes).
- Only strings, integers, booleans, null, arrays and objects. Floats are refused: their text
  form is ambiguous across languages, so money, percentages and the like are integers.
- Instants are strings in UTC with microseconds: ``2015-11-26T10:00:00.000000Z``.
- UUIDs are lowercase hyphenated strings.
- The hash of an event is SHA-256 over the canonical encoding of its envelope without the
  ``hash`` field, written as 64 lowercase hex digits. The first event's ``prev_hash`` is
  64 zeros.
"""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

GENESIS_HASH = "0" * 64
_ZERO = timedelta(0)


class NotCanonical(ValueError):
    """A value that has no canonical encoding (a float, a naive datetime, an odd type)."""


@functools.lru_cache(maxsize=4096)  # an event's instants are formatted several times over
def format_instant(instant: datetime) -> str:
    if instant.tzinfo is None:
        raise NotCanonical("instants must be timezone-aware")
    # isoformat pads the year to four digits everywhere (strftime's %Y does not on every
    # platform); instants already in UTC skip the conversion, a rebuild formats millions.
    utc = instant if instant.utcoffset() == _ZERO else instant.astimezone(UTC)
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_instant(text: str) -> datetime:
    if not text.endswith("Z"):
        raise NotCanonical(f"not a canonical instant: {text!r}")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)


def _check(value: Any) -> None:
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        raise NotCanonical(f"floats have no canonical encoding: {value!r}")
    if isinstance(value, list):
        for item in value:
            _check(item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"object keys must be strings: {key!r}")
            _check(item)
        return
    raise NotCanonical(f"{type(value).__name__} has no canonical encoding")


def canonical_bytes(value: Any) -> bytes:
    _check(value)
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
