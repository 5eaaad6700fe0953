"""Reporting's pure projection: documents and timeline folded from envelopes."""

from __future__ import annotations

import json
import random
from datetime import date
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from ipmg_contracts import notifications as notify
from ipmg_reporting.live import read_document
from ipmg_reporting.projections import (
    DOCUMENT_MODELS,
    Document,
    DocumentKey,
    MeetingDoc,
    Model,
    NotificationDoc,
    ResolutionDoc,
    Skipped,
    Timeline,
    TimelineEntry,
    decode,
    document_key,
    key_of,
    model_from_envelopes,
    project,
)
from ipmg_reporting.reports import notification_log
from ipmg_shared.actors import Unit
from ipmg_shared.envelope import Envelope
from tests.unit.reporting.history import (
    MEETING,
    RESOLUTION,
    HistoryWriter,
    at,
    envelopes_of,
    interleavings,
    lifecycle,
    sample_history,
    with_notifications,
)


def test_a_lifecycle_folds_into_one_document_per_meeting_and_resolution() -> None:
    model = model_from_envelopes(e.to_json() for e in lifecycle().envelopes())

    assert model.skipped == {}
    meeting = model.meetings[str(MEETING)]
    assert (meeting.status, meeting.host_unit, meeting.day) == ("held", "ajk", date(2015, 11, 26))
    assert meeting.occasion == "16 Days of Activism"
    assert [a.unit for a in meeting.attendees] == ["ncsw", "ajk", "ajk", "punjab"]
    assert meeting.version == 2
    resolution = model.resolutions[str(RESOLUTION)]
    assert resolution.status == "action_plan_adopted"
    assert resolution.title == "Independent WDDs by June"
    assert resolution.amendments == 1
    assert [round_doc.round for round_doc in resolution.rounds] == [1, 2]
    # Punjab's position was given in round 1: history keeps it, the current round does not.
    assert [(f.round, f.unit, f.position) for f in resolution.feedback] == [
        (1, "punjab", "amend"),
        (2, "sindh", "endorse"),
    ]
    assert list(resolution.current_positions()) == ["sindh"]
    assert resolution.signatories[0].unit == "ncsw"
    first, second = resolution.actions
    assert (first.status, first.percent, first.reports) == ("completed", 100, 2)
    assert first.completed_at == "2016-01-28T10:00:00.000000Z"
    assert first.evidence == ("assembly-order-12",)
    assert (second.status, second.percent, second.completed_at) == ("not_started", 0, None)
    assert model.streams == {f"meeting-{MEETING}": 2, f"resolution-{RESOLUTION}": 11}
    assert model.sources["resolutions"].events_applied == 11


def test_the_timeline_names_actor_time_position_and_what_happened() -> None:
    model = model_from_envelopes(e.to_json() for e in lifecycle().envelopes())

    meeting_line = model.timeline_of(str(MEETING))
    assert [entry.type for entry in meeting_line] == [
        "MeetingScheduled",
        "MeetingHeld",
        "ResolutionPassed",  # a related entity: the meeting the resolution was passed at
    ]
    assert [entry.primary for entry in meeting_line] == [True, True, False]
    assert meeting_line[1].summary == (
        "Meeting held on 2015-11-26 at Muzaffarabad, hosted by AJK: 4 attendees from 3 units"
    )
    punjab = model.timeline_of("punjab")
    assert [entry.summary for entry in punjab] == [
        "Punjab (Secretary WDD Punjab) asks to amend resolution IPMG/2015-Q4/R1",
        "Action plan for 2016-Q1 adopted on resolution IPMG/2015-Q4/R1: "
        "2 actions for Punjab, Sindh",
        "Action a1 of resolution IPMG/2015-Q4/R1 (Punjab): in progress, 40%: "
        "Draft with the law department",
        "Action a1 of resolution IPMG/2015-Q4/R1 (Punjab): completed, 100%: Bill tabled",
    ]
    assert punjab[0].actor.subject == "focal@punjab.gov.pk"
    assert (punjab[0].source, punjab[0].position) == ("resolutions", 3)
    recent = model.recent_events(2)
    assert [entry.summary for entry in recent] == [
        "Action a1 of resolution IPMG/2015-Q4/R1 (Punjab): completed, 100%: Bill tabled",
        "Action a1 of resolution IPMG/2015-Q4/R1 (Punjab): in progress, 40%: "
        "Draft with the law department",
    ]


def test_duplicates_and_gaps_are_skipped_and_never_move_a_stream_on() -> None:
    envelopes = lifecycle().envelopes()
    model = Model()
    for envelope in envelopes[:4]:
        model.apply_json(envelope.to_json())
    assert isinstance(model.apply_json(envelopes[2].to_json()), Skipped)  # redelivered
    assert isinstance(model.apply_json(envelopes[5].to_json()), Skipped)  # version 4 of 3
    assert model.skipped == {"duplicate": 1, "stream_gap": 1}
    assert model.streams[f"resolution-{RESOLUTION}"] == 2
    for envelope in envelopes[4:]:
        model.apply_json(envelope.to_json())
    straight = model_from_envelopes(e.to_json() for e in envelopes)
    assert model.documents == straight.documents


def test_what_cannot_be_projected_is_counted_never_raised() -> None:
    good = lifecycle().envelopes()[0].to_json()
    unknown_type = {**good, "type": "MeetingMoved"}
    unknown_source = {**good, "source": "payments"}
    # A stream whose first event is not the one that creates the document: a broken stream.
    orphan = {
        **lifecycle().envelopes()[3].to_json(),
        "stream_id": "resolution-orphan",
        "stream_version": 1,
    }
    model = model_from_envelopes(
        [b"\x00 not json", "{}", unknown_type, unknown_source, orphan, json.dumps(good)]
    )
    assert model.skipped == {
        "undecodable": 2,
        "unknown_type": 1,
        "unknown_source": 1,
        "unprojectable": 1,
    }
    assert list(model.meetings) == [str(MEETING)]
    assert "resolution-orphan" not in model.streams


def test_documents_survive_their_json_round_trip_unchanged() -> None:
    commits = with_notifications(sample_history(seed=3))
    model = model_from_envelopes(e.to_json() for e in envelopes_of(commits))
    documents: list[Document] = [
        *model.meetings.values(),
        *model.resolutions.values(),
        *model.notifications.values(),
    ]
    assert {key_of(document).kind for document in documents} == set(DOCUMENT_MODELS)
    for document in documents:
        stored = json.loads(document.model_dump_json())
        assert read_document(key_of(document).kind, stored) == document


def fold_like_the_live_projection(envelopes: list[Envelope]) -> Model:
    """One document at a time through JSON, as the live consumer loads and saves them."""
    saved: dict[DocumentKey, str] = {}
    streams: dict[str, int] = {}
    model = Model()
    for envelope in envelopes:
        decoded = decode(json.dumps(envelope.to_json()))
        assert not isinstance(decoded, Skipped)
        _, event = decoded
        if envelope.stream_version != streams.get(envelope.stream_id, 0) + 1:
            continue  # the runner's checkpoint says: already applied
        streams[envelope.stream_id] = envelope.stream_version
        key = document_key(event)
        before = None if key is None else saved.get(key)
        change = project(
            None if key is None or before is None else read_document(key.kind, json.loads(before)),
            envelope,
            event,
        )
        if key is not None:
            assert change.document is not None
            saved[key] = change.document.model_dump_json()
        for entity_id, _, entry in change.timeline.rows():
            model.timeline.setdefault(entity_id, []).append(
                TimelineEntry.model_validate_json(entry)
            )
    for key, text in saved.items():
        model.put(read_document(key.kind, json.loads(text)))
    return model


def handed_over(model: Model) -> Model:
    """A model rebuilt from its documents' JSON and its checkpoints, as stored."""
    return Model(
        meetings={
            k: MeetingDoc.model_validate_json(d.model_dump_json())
            for k, d in model.meetings.items()
        },
        resolutions={
            k: ResolutionDoc.model_validate_json(d.model_dump_json())
            for k, d in model.resolutions.items()
        },
        notifications={
            k: NotificationDoc.model_validate_json(d.model_dump_json())
            for k, d in model.notifications.items()
        },
        streams=dict(model.streams),
    )


@settings(max_examples=20, deadline=None)
@given(
    history_seed=st.integers(0, 10_000),
    order_seed=st.integers(0, 10_000),
    split=st.floats(0, 1),
)
def test_any_interleaving_of_sources_and_any_split_give_the_same_projection(
    history_seed: int, order_seed: int, split: float
) -> None:
    writer = HistoryWriter(seed=history_seed)
    commits = with_notifications([*writer.story(), *writer.random_commits(40)], history_seed)
    envelopes = envelopes_of(commits)
    straight = model_from_envelopes(e.to_json() for e in envelopes)

    shuffled = list(interleavings(envelopes, random.Random(order_seed)))
    assert model_from_envelopes(e.to_json() for e in shuffled).documents == straight.documents

    live = fold_like_the_live_projection(shuffled)
    assert live.documents == straight.documents
    for entity_id in straight.timeline:
        assert live.timeline_of(entity_id) == straight.timeline_of(entity_id)

    # Folded in two parts with the documents stored in between, and with a prefix of the
    # second part redelivered (at-least-once delivery): the same documents.
    cut = int(split * len(shuffled))
    first = model_from_envelopes(e.to_json() for e in shuffled[:cut])
    resumed = handed_over(first)
    for envelope in [*shuffled[cut // 2 : cut], *shuffled[cut:]]:
        resumed.apply_json(envelope.to_json())
    assert resumed.documents == straight.documents


def test_project_is_pure_and_keyed_by_the_entity_not_the_stream() -> None:
    envelope = lifecycle().envelopes()[2]
    decoded = decode(envelope)
    assert not isinstance(decoded, Skipped)
    first = project(None, *decoded)
    again = project(None, *decoded)
    assert first == again
    assert first.key == DocumentKey("resolution", str(RESOLUTION))
    assert isinstance(first.document, ResolutionDoc)
    assert first.document.meeting_id == str(MEETING)


def test_deliveries_fold_into_the_notifications_log_and_onto_timelines() -> None:
    delivery = UUID("00000000-0000-4000-8000-0000000000d1")
    cause = {
        "delivery_id": delivery,
        "cause_event_id": UUID("00000000-0000-4000-8000-0000000000c1"),
        "cause_type": "ResolutionCirculated",
        "cause_source": "resolutions",
        "kind": notify.NotificationKind.FEEDBACK_REQUEST,
        "channel": notify.Channel.EMAIL,
        "unit": Unit.PUNJAB,
        "person": "Secretary WDD Punjab",
        "address": "wdd@punjab.gov.pk",
        "subject": "Resolution 1 awaits your feedback",
    }
    log = lifecycle()
    log.add(notify.NotificationFailed(**cause, attempts=3, error="connection refused"), at(1))
    log.add(notify.NotificationSent(**cause, attempts=1), at(2))
    log.add(notify.NotificationSent(**cause, attempts=1), at(3))  # already sent: a broken stream
    log.add(
        notify.ReminderIssued(
            reminder_kind=notify.ReminderKind.FEEDBACK_DUE,
            entity=str(RESOLUTION),
            unit=Unit.SINDH,
            due_on=date(2015, 12, 20),
            resolution_id=RESOLUTION,
            action_id=None,
            quarter=None,
        ),
        at(18),
    )
    model = model_from_envelopes(e.to_json() for e in log.envelopes())

    assert model.skipped == {"unprojectable": 1}
    sent = model.notifications[str(delivery)]
    assert (sent.status, sent.rounds, sent.attempts, sent.error) == ("sent", 2, 4, None)
    assert (sent.first_at, sent.sent_at) == (
        "2015-12-01T10:00:00.000000Z",
        "2015-12-02T10:00:00.000000Z",
    )
    assert [row.delivery_id for row in notification_log(model.documents, unit="punjab")] == [
        str(delivery)
    ]
    assert notification_log(model.documents, status="failed") == []
    assert notification_log(model.documents, kind="invitation") == []
    punjab = [entry.summary for entry in model.timeline_of("punjab")]
    assert punjab[:2] == [
        "Feedback request to Secretary WDD Punjab (Punjab) by email failed after 3 attempts: "
        "connection refused",
        "Feedback request emailed to Secretary WDD Punjab (Punjab): "
        "Resolution 1 awaits your feedback",
    ]
    (reminder,) = [e for e in model.timeline_of(str(RESOLUTION)) if e.type == "ReminderIssued"]
    assert reminder.summary == "Feedback due reminder for Sindh (feedback), due 2015-12-20"
    assert (reminder.primary, reminder.source) == (False, "notifications")
    assert reminder.model_copy(update={"entity_id": "sindh"}) in model.timeline_of("sindh")


@given(
    entity_ids=st.lists(st.text(), min_size=1, max_size=4),
    texts=st.lists(st.text(), min_size=7, max_size=7),
    ids=st.lists(st.uuids(), min_size=2, max_size=2),
    numbers=st.lists(st.integers(0, 2**63 - 1), min_size=2, max_size=2),
)
def test_timeline_rows_are_the_text_the_entry_model_renders(
    entity_ids: list[str], texts: list[str], ids: list[UUID], numbers: list[int]
) -> None:
    """The stored rows are rendered once for an event's entries, with no entry built: the
    same text as each entry's ``model_dump_json``, so rows written before and after compare
    alike, and the entries read back from them are those entries."""
    subject, unit, role, stream, type_, summary, instant = texts
    event_id, correlation = ids
    fields = {
        "source": "meetings",
        "position": numbers[0],
        "stream_id": stream,
        "stream_version": numbers[1],
        "event_id": event_id,
        "type": type_,
        "occurred_at": instant,
        "recorded_at": instant,
        "actor": {"subject": subject, "unit": unit, "role": role},
        "correlation_id": correlation,
        "summary": summary,
    }
    timeline = Timeline(tuple(entity_ids), fields)
    as_text = {**fields, "event_id": str(event_id), "correlation_id": str(correlation)}
    expected = [
        TimelineEntry(entity_id=entity, primary=index == 0, **as_text)
        for index, entity in enumerate(entity_ids)
    ]
    rows = timeline.rows()
    entries = timeline.entries()
    assert [row[2] for row in rows] == [entry.model_dump_json() for entry in expected]
    assert [(row[0], row[1]) for row in rows] == [(e.entity_id, e.primary) for e in expected]
    assert list(entries) == expected
    assert [e.primary for e in entries] == [True] + [False] * (len(entity_ids) - 1)
