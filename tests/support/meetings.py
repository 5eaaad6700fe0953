"""Meeting bodies for tests that need a meeting but not the rotation.

Every e2e test of a session shares one meetings store, so a test's meeting is called as
extraordinary, with a reason and a venue no other test uses: it never takes a quarter's
ordinary slot nor duplicates another test's meeting.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4


def extraordinary_meeting(scheduled_for: str, host_unit: str, venue: str) -> dict[str, Any]:
    return {
        "scheduled_for": scheduled_for,
        "host_unit": host_unit,
        "venue": f"{venue} ({uuid4().hex[:8]})",
        "extraordinary": True,
        "reason": "Called for this scenario only",
    }
