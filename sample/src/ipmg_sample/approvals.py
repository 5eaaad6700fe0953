"""How the secretariat approved each sample resolution that still had an amend position open.

Keyed like the seed's idempotency keys (``<meeting>:<resolution>``); any other approval is
an empty body: its round closed with nothing outstanding.
"""

from __future__ import annotations

from ipmg_sample.history import JsonBody

APPROVALS: dict[str, JsonBody] = {
    "2015-Q4:cedaw-reporting": {
        "overridden": ["sindh"],
        "override_reason": "Sindh's request for a common template is met by the amended text",
    },
    "2015-Q4:independent-wdds": {
        "overridden": ["khyber-pakhtunkhwa"],
        "override_reason": "Khyber Pakhtunkhwa's phasing over two years is left to its own "
        "action plan",
    },
}
