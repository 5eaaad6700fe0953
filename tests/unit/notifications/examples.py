"""Sample facts, events and directories for the notifications service's unit tests."""

from __future__ import annotations

import json
from datetime import date
from importlib import resources
from typing import Any
from uuid import UUID

from ipmg_contracts.meetings import MeetingScheduled
from ipmg_contracts.resolutions import (
    Action,
    ActionPlanAdopted,
    ResolutionCirculated,
    ResolutionSigned,
    Signatory,
)
from ipmg_notifications.directory import Directory
from ipmg_notifications.domain import MeetingFacts, ResolutionFacts
from ipmg_shared.actors import Unit

MEETING = UUID("00000000-0000-4000-8000-00000000000a")
RESOLUTION = UUID("00000000-0000-4000-8000-00000000000b")
HELD_ON = date(2015, 11, 26)
DUE = date(2016, 1, 15)

MEETING_FACTS = MeetingFacts(MEETING, date(2015, 11, 20), Unit.AJK, "Muzaffarabad", None)
RESOLUTION_FACTS = ResolutionFacts(
    RESOLUTION,
    3,
    "Independent Women Development Departments",
    "The Group resolves that each unit keeps an independent WDD <with its own budget>.",
    (Unit.PUNJAB, Unit.SINDH, Unit.BALOCHISTAN),
)

SCHEDULED = MeetingScheduled(
    meeting_id=MEETING,
    scheduled_for=HELD_ON,
    host_unit=Unit.AJK,
    venue="Muzaffarabad",
    occasion="16 Days of Activism",
)
CIRCULATED = ResolutionCirculated(
    resolution_id=RESOLUTION,
    participants=(Unit.PUNJAB, Unit.SINDH, Unit.KHYBER_PAKHTUNKHWA),
    feedback_due=DUE,
)
SIGNED = ResolutionSigned(
    resolution_id=RESOLUTION,
    signed_on=date(2016, 2, 1),
    signatories=(Signatory(name="Chairperson", role="Chairperson, NCSW", unit=Unit.NCSW),),
)
ADOPTED = ActionPlanAdopted(
    resolution_id=RESOLUTION,
    quarter="2016-Q1",
    actions=(
        Action(action_id="PB-1", unit=Unit.PUNJAB, description="Notify the WDD", due_on=DUE),
        Action(action_id="PB-2", unit=Unit.PUNJAB, description="Fund the WDD", due_on=DUE),
        Action(action_id="SD-1", unit=Unit.SINDH, description="Sindh's own task", due_on=DUE),
    ),
)


def packaged_directory_document() -> dict[str, Any]:
    text = resources.files("ipmg_notifications").joinpath("directory.json").read_text()
    document: dict[str, Any] = json.loads(text)
    return document


def directory_with(**changes: Any) -> Directory:
    """The packaged directory, with a webhook for Punjab (and any top-level changes)."""
    document = packaged_directory_document()
    for entry in document["units"]:
        if entry["unit"] == "punjab":
            entry["webhook_url"] = "https://hooks.punjab.example.org/ipmg"
    document.update(changes)
    return Directory.model_validate(document)
