"""One share of a rebuild in a process of its own: ``python -m ipmg_reporting.rebuild_worker``.

Started by ``rebuild_projection``, never by hand. Reads its ``ShareTask`` (pickled, from its
parent) on stdin and writes JSON lines on stdout: ``{"read": n}`` after each batch, then
``{"folded": …}``. Any failure exits non-zero with its reason as the last line on stderr.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import sys

from ipmg_reporting.rebuild import ShareTask, fold_share
from ipmg_shared.logging import configure_logging


class ReadLines:
    """Progress as lines for the parent, which adds up the shares' progress."""

    def phase(self, name: str, total: int) -> None:
        pass

    def advance(self, events: int, remaining: int) -> None:
        print(json.dumps({"read": events}), flush=True)


def main() -> None:
    try:
        # From the parent process only (it starts this one): never from anywhere else.
        task = pickle.load(sys.stdin.buffer)  # noqa: S301
    except (EOFError, pickle.UnpicklingError):
        task = None
    if not isinstance(task, ShareTask):
        sys.exit("a rebuild worker reads its task from the rebuild that starts it, on stdin")
    configure_logging(task.settings.log_level, task.settings.log_json)
    try:
        folded = asyncio.run(fold_share(task, ReadLines()))
    except Exception as error:
        sys.exit(f"{type(error).__name__}: {error}")
    print(json.dumps({"folded": folded.to_json()}), flush=True)


if __name__ == "__main__":
    main()
