"""Every resolution event survives the trip through JSON and the registry unchanged."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipmg_resolutions.domain import (
    REGISTRY,
    Action,
    ActionPlanAdopted,
    CloseOutcome,
    Commitment,
    FeedbackReceived,
    Position,
    PriorityArea,
    ProgressReported,
    ProgressStatus,
    ResolutionAmended,
    ResolutionApproved,
    ResolutionCirculated,
    ResolutionClosed,
    ResolutionPassed,
    ResolutionSigned,
    Signatory,
)
from ipmg_shared.actors import Unit
from ipmg_shared.events import DomainEvent


def texts(max_size: int) -> st.SearchStrategy[str]:
    # The models strip surrounding whitespace, so generate values that are already stripped.
    return st.text(max_size=max_size).map(str.strip).filter(bool)


ids = st.uuids(version=4)
units = st.sampled_from(Unit)
distinct_units = st.lists(units, min_size=1, unique=True).map(tuple)
action_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}", fullmatch=True)
actions = st.lists(
    st.builds(Action, action_id=action_ids, unit=units, description=texts(80), due_on=st.dates()),
    min_size=1,
    max_size=5,
    unique_by=lambda action: action.action_id,
).map(tuple)


@st.composite
def progress_reports(draw: st.DrawFn) -> ProgressReported:
    status = draw(st.sampled_from(ProgressStatus))
    percent = 100 if status is ProgressStatus.COMPLETED else draw(st.integers(0, 100))
    return ProgressReported(
        resolution_id=draw(ids),
        action_id=draw(action_ids),
        unit=draw(units),
        status=status,
        percent=percent,
        narrative=draw(texts(200)),
        evidence=tuple(draw(st.lists(texts(60), max_size=3))),
    )


@st.composite
def closings(draw: st.DrawFn) -> ResolutionClosed:
    outcome = draw(st.sampled_from(CloseOutcome))
    superseded_by = draw(st.none() | ids) if outcome is CloseOutcome.SUPERSEDED else None
    return ResolutionClosed(
        resolution_id=draw(ids),
        outcome=outcome,
        reason=draw(texts(200)),
        superseded_by=superseded_by,
    )


EVENTS: dict[type[DomainEvent], st.SearchStrategy[DomainEvent]] = {
    ResolutionPassed: st.builds(
        ResolutionPassed,
        resolution_id=ids,
        meeting_id=ids,
        passed_on=st.dates(),
        number=st.integers(1, 9_999),
        title=texts(80),
        text=texts(500),
        priority_area=st.sampled_from(PriorityArea),
        commitments=st.lists(
            st.builds(Commitment, instrument=texts(40), detail=st.none() | texts(200)), max_size=3
        ).map(tuple),
        responsible_units=distinct_units,
    ),
    ResolutionCirculated: st.builds(
        ResolutionCirculated,
        resolution_id=ids,
        participants=distinct_units,
        feedback_due=st.dates(),
    ),
    FeedbackReceived: st.builds(
        FeedbackReceived,
        resolution_id=ids,
        unit=units,
        person=texts(40),
        position=st.sampled_from(Position),
        comments=st.none() | texts(200),
    ),
    ResolutionAmended: st.builds(
        ResolutionAmended, resolution_id=ids, title=texts(80), text=texts(500), reason=texts(200)
    ),
    ResolutionApproved: st.builds(ResolutionApproved, resolution_id=ids),
    ResolutionSigned: st.builds(
        ResolutionSigned,
        resolution_id=ids,
        signed_on=st.dates(),
        signatories=st.lists(
            st.builds(Signatory, name=texts(40), role=texts(40), unit=units), min_size=1, max_size=4
        ).map(tuple),
    ),
    ActionPlanAdopted: st.builds(
        ActionPlanAdopted,
        resolution_id=ids,
        quarter=st.from_regex(r"[0-9]{4}-Q[1-4]", fullmatch=True),
        actions=actions,
    ),
    ProgressReported: progress_reports(),
    ResolutionClosed: closings(),
}


def test_every_registered_event_has_a_strategy() -> None:
    assert set(EVENTS) == set(REGISTRY.event_types.values())


@pytest.mark.parametrize("event_class", list(EVENTS), ids=lambda cls: cls.event_type)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_events_round_trip_through_the_registry(
    event_class: type[DomainEvent], data: st.DataObject
) -> None:
    event = data.draw(EVENTS[event_class])
    payload = event.model_dump(mode="json")

    decoded = REGISTRY.decode(event_class.event_type, event_class.schema_version, payload)

    assert decoded == event
    assert type(decoded) is event_class
