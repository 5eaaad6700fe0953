"""Every consumer's pure part takes every payload its contract allows without raising.

The payloads are drawn from each event model's JSON Schema (the published contract): a date
in year 9999, a one-character title, an action plan of one action are all legal on the wire.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipmg_contracts import meetings, notifications, resolutions
from ipmg_notifications.deliveries import Cause, DeliveryStatus, planned_rows
from ipmg_notifications.directory import load_directory
from ipmg_notifications.domain import (
    Facts,
    MeetingFacts,
    ResolutionFacts,
    is_stale,
    notices_for,
)
from ipmg_reporting.projections import model_from_envelopes
from ipmg_shared.actors import Actor, Role, Unit
from ipmg_shared.canonical import GENESIS_HASH, format_instant
from ipmg_shared.checkpoints import ChainCheckpointSigned
from ipmg_shared.envelope import Envelope, hash_event_fields
from ipmg_shared.events import DomainEvent
from tests.support.contract_strategies import payloads

SECRETARIAT = Actor(subject="staff@ncsw.gov.pk", unit=Unit.NCSW, role=Role.SECRETARIAT)
DIRECTORY = load_directory()
KARACHI = ZoneInfo("Asia/Karachi")
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

UPSTREAM = {**meetings.REGISTRY.event_types, **resolutions.REGISTRY.event_types}
EVERY_SOURCE = {
    "meetings": [*meetings.REGISTRY.event_types.values(), ChainCheckpointSigned],
    "resolutions": [*resolutions.REGISTRY.event_types.values(), ChainCheckpointSigned],
    "notifications": [*notifications.REGISTRY.event_types.values(), ChainCheckpointSigned],
}

units = st.sampled_from(list(Unit))
facts = st.builds(
    Facts,
    meeting=st.builds(
        MeetingFacts,
        meeting_id=st.uuids(),
        scheduled_for=st.dates(),
        host_unit=units,
        venue=st.text(min_size=1, max_size=40),
        occasion=st.none() | st.text(min_size=1, max_size=40),
    ),
    resolution=st.builds(
        ResolutionFacts,
        resolution_id=st.uuids(),
        number=st.integers(1, 9_999),
        title=st.text(min_size=1, max_size=40),
        text=st.text(min_size=1, max_size=80),
        responsible_units=st.lists(units, min_size=1, unique=True).map(tuple),
    ),
)
instants = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


def envelope_of(source: str, event: DomainEvent, at: datetime) -> Envelope:
    fields = {
        "event_id": str(uuid4()),
        "type": event.event_type,
        "schema_version": event.schema_version,
        "source": source,
        "stream_id": f"stream-{uuid4()}",
        "stream_version": 1,
        "position": 1,
        "occurred_at": format_instant(at),
        "recorded_at": format_instant(at),
        "actor": SECRETARIAT.model_dump(mode="json"),
        "correlation_id": str(uuid4()),
        "causation_id": None,
        "payload": event.model_dump(mode="json"),
        "prev_hash": GENESIS_HASH,
    }
    fields["hash"] = hash_event_fields(fields)
    return Envelope.model_validate(fields)


@pytest.mark.parametrize("event_type", sorted(UPSTREAM))
@PROPERTY
@given(data=st.data(), known=facts, now=instants, recorded_at=instants)
def test_notifications_plans_every_legal_upstream_event(
    event_type: str, data: st.DataObject, known: Facts, now: datetime, recorded_at: datetime
) -> None:
    event = data.draw(payloads(UPSTREAM[event_type]))
    source = "meetings" if event_type in meetings.REGISTRY.event_types else "resolutions"
    envelope = envelope_of(source, event, recorded_at)

    notices = notices_for(event, known)
    today = now.astimezone(KARACHI).date()
    past = [notice for notice in notices if notice.is_past(today)]
    stale = is_stale(envelope.recorded_at, now, timedelta(days=30))
    rows = planned_rows(Cause.of(envelope), notices, DIRECTORY, DeliveryStatus.PENDING, now)

    assert isinstance(stale, bool)
    assert len(past) <= len(notices)
    # One delivery per recipient, each with a subject its own NotificationSent can record.
    assert len({row[0] for row in rows}) == len(rows)
    subjects = [str(row[11]) for row in rows]
    assert all(0 < len(subject) <= 300 and "\n" not in subject for subject in subjects)


@pytest.mark.parametrize(
    ("source", "event_class"),
    [(source, cls) for source, classes in EVERY_SOURCE.items() for cls in classes],
    ids=lambda value: value if isinstance(value, str) else value.event_type,
)
@PROPERTY
@given(data=st.data(), at=instants)
def test_reporting_projects_every_legal_event(
    source: str, event_class: type[DomainEvent], data: st.DataObject, at: datetime
) -> None:
    event = data.draw(payloads(event_class))
    envelope = envelope_of(source, event, at)

    model = model_from_envelopes([envelope.to_bytes()])

    # A first event that needs an earlier one (a reschedule) is a broken stream, and a NUL
    # cannot be stored: both are set aside by design. Every payload value is understood.
    assert set(model.skipped) <= {"unprojectable", "undecodable"}
    assert model.events_applied + model.skipped.total() == 1


def test_a_far_future_signature_plans_its_notices() -> None:
    signed = resolutions.ResolutionSigned(
        resolution_id=uuid4(),
        signed_on=date(9999, 12, 31),
        signatories=(resolutions.Signatory(name="A", role="Minister", unit=Unit.SINDH),),
    )
    known = Facts(resolution=ResolutionFacts(uuid4(), 1, "T", "Text", (Unit.SINDH,)))

    (notice,) = notices_for(signed, known)

    assert notice.relevant_until == date.max
