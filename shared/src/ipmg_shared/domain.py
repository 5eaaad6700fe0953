"""Vocabulary every pure domain module shares: refusals are values with a named rule."""

from __future__ import annotations


class CommandRefused(Exception):
    """A command was refused by a domain rule; nothing is appended.

    ``rule`` is a short stable identifier (e.g. ``resolution.sign.requires_approval``) that
    HTTP problem details and tests refer to; ``reason`` is the sentence shown to people.
    """

    status = 409

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


class NotAuthorised(CommandRefused):
    """The actor may not run this command (e.g. a unit acting for another unit)."""

    status = 403


class NotFound(CommandRefused):
    """The command addresses an aggregate that does not exist."""

    status = 404
