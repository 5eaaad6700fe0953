"""The tiny aggregate every append benchmark runs: a checklist whose items get ticked.

One command ticks 1 or 10 items, so it decides 1 or 10 events; a rule (an item is ticked once)
makes ``decide`` read the state it was given, as the real aggregates do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from ipmg_shared.application import AggregateType
from ipmg_shared.domain import CommandRefused
from ipmg_shared.events import DomainEvent, EventRegistry

# The same words in every contender's payload, so each stores the same JSON.
AT = datetime(2015, 11, 26, 10, 0, tzinfo=UTC)  # business time of the events filled in bulk
NOTE = "Checked against the signed minutes of the quarterly meeting; evidence is on file."


class ChecklistOpened(DomainEvent):
    event_type: ClassVar[str] = "ChecklistOpened"
    title: str


class ItemTicked(DomainEvent):
    event_type: ClassVar[str] = "ItemTicked"
    item: str
    note: str


@dataclass(frozen=True)
class OpenChecklist:
    title: str


@dataclass(frozen=True)
class TickItems:
    items: tuple[str, ...]
    note: str = NOTE


@dataclass(frozen=True)
class Checklist:
    opened: bool = False
    ticked: frozenset[str] = frozenset()


def decide(command: OpenChecklist | TickItems, state: Checklist) -> list[DomainEvent]:
    if isinstance(command, OpenChecklist):
        if state.opened:
            raise CommandRefused("checklist.open.once", "the checklist is already open")
        return [ChecklistOpened(title=command.title)]
    if not state.opened:
        raise CommandRefused("checklist.tick.requires_open", "the checklist is not open")
    if state.ticked.intersection(command.items):
        raise CommandRefused("checklist.tick.once", "an item is ticked once")
    return [ItemTicked(item=item, note=command.note) for item in command.items]


def evolve(state: Checklist, event: DomainEvent) -> Checklist:
    if isinstance(event, ChecklistOpened):
        return Checklist(opened=True)
    if isinstance(event, ItemTicked):
        return Checklist(opened=True, ticked=state.ticked | {event.item})
    return state


def items(count: int) -> tuple[str, ...]:
    return tuple(f"item-{n}" for n in range(1, count + 1))


REGISTRY = EventRegistry([ChecklistOpened, ItemTicked])
CHECKLIST = AggregateType[Checklist]("checklist", Checklist, evolve, decide)
