"""Progress on stderr, so stdout keeps only the results."""

from __future__ import annotations

import sys
import time

_STARTED = time.monotonic()


def say(line: str) -> None:
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {line}", file=sys.stderr, flush=True)
