"""The notifications service's events: registered, canonical, and self-consistent."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import pytest
from pydantic import ValidationError

from ipmg_contracts.notifications import (
    REGISTRY,
    Channel,
    NotificationFailed,
    NotificationKind,
    NotificationSent,
    ReminderIssued,
    ReminderKind,
)
from ipmg_shared.actors import Unit
from ipmg_shared.canonical import canonical_bytes

RESOLUTION = UUID("00000000-0000-4000-8000-00000000000b")
SENT = NotificationSent(
    delivery_id=UUID("00000000-0000-5000-8000-000000000001"),
    cause_event_id=UUID("00000000-0000-4000-8000-000000000002"),
    cause_type="ResolutionCirculated",
    cause_source="resolutions",
    kind=NotificationKind.FEEDBACK_REQUEST,
    channel=Channel.EMAIL,
    unit=Unit.SINDH,
    person="IPMG Focal Person, Sindh",
    address="focal.sindh@example.org",
    subject="Feedback requested",
    attempts=1,
)


def test_the_catalogue_names_are_registered() -> None:
    assert set(REGISTRY.event_types) == {"NotificationSent", "NotificationFailed", "ReminderIssued"}


def test_payloads_survive_the_wire_and_have_a_canonical_form() -> None:
    wire = SENT.model_dump(mode="json")
    canonical_bytes(wire)  # no floats, nothing without a canonical encoding
    assert REGISTRY.decode("NotificationSent", 1, wire) == SENT
    failed = NotificationFailed(**{**SENT.model_dump(), "attempts": 5}, error="SMTP refused")
    assert REGISTRY.decode("NotificationFailed", 1, failed.model_dump(mode="json")) == failed


def test_an_outcome_counts_at_least_one_attempt() -> None:
    with pytest.raises(ValidationError):
        NotificationSent(**{**SENT.model_dump(), "attempts": 0})


def test_a_reminder_names_what_it_is_about() -> None:
    ReminderIssued(
        reminder_kind=ReminderKind.ACTION_OVERDUE,
        entity=f"{RESOLUTION}/PB-1",
        unit=Unit.PUNJAB,
        due_on=date(2016, 3, 1),
        resolution_id=RESOLUTION,
        action_id="PB-1",
        quarter=None,
    )
    with pytest.raises(ValidationError, match="names its resolution"):
        ReminderIssued(
            reminder_kind=ReminderKind.FEEDBACK_DUE,
            entity=str(RESOLUTION),
            unit=Unit.PUNJAB,
            due_on=date(2016, 1, 15),
            resolution_id=None,
            action_id=None,
            quarter=None,
        )
    with pytest.raises(ValidationError, match="exactly for action reminders"):
        ReminderIssued(
            reminder_kind=ReminderKind.FEEDBACK_DUE,
            entity=str(RESOLUTION),
            unit=Unit.PUNJAB,
            due_on=date(2016, 1, 15),
            resolution_id=RESOLUTION,
            action_id="PB-1",
            quarter=None,
        )
    with pytest.raises(ValidationError, match="names its quarter"):
        ReminderIssued(
            reminder_kind=ReminderKind.QUARTERLY_DIGEST,
            entity="2016-Q2",
            unit=Unit.NCSW,
            due_on=date(2016, 4, 1),
            resolution_id=None,
            action_id=None,
            quarter="2016-Q1",
        )
