"""Reporting's projections: documents folded from the event log by pure code (no I/O).

One document per meeting and per resolution, and timeline entries per entity, built by the
same functions on three paths: the live PostgreSQL projection (load one document, ``project``,
save it), answers as of a past instant (fold the log recorded up to that instant), and an
auditor's offline replay of an exported bundle (``model_from_envelopes``).

Folding is insensitive to how sources interleave: an event changes only its own stream's
document, and reports join documents (a resolution's meeting) only when they are computed.
Within a stream, events apply in version order exactly once, by the consumer runner's rules:
a version already applied is a duplicate, a version beyond the next one is a gap; both are
skipped (the live consumer dead-letters gaps), and only an applied event moves a stream on.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import to_json

from ipmg_contracts import meetings as meeting_events
from ipmg_contracts import notifications as notification_events
from ipmg_contracts import resolutions as resolution_events
from ipmg_contracts.references import resolution_reference
from ipmg_shared.actors import Role, Unit
from ipmg_shared.canonical import format_instant
from ipmg_shared.checkpoints import SYSTEM_EVENTS
from ipmg_shared.envelope import Envelope
from ipmg_shared.events import DomainEvent, EventDecodingError, EventRegistry, JsonObject

# Bump whenever documents, timeline entries or projection.sql change: a service that finds
# another version in its live copy rebuilds beside it and swaps (see rebuild.py).
PROJECTION_VERSION = 4  # 2: the notifications log; 3: json columns; 4: envelopes as published
CONSUMER = "reporting"

# Every source reporting reads, and the events it understands from each. A new source needs
# only its registry here: its events are then logged and put on the timeline; giving them a
# document of their own is the optional next step in ``project``.
SOURCES: Mapping[str, EventRegistry] = {
    "meetings": meeting_events.REGISTRY,
    "resolutions": resolution_events.REGISTRY,
    "notifications": notification_events.REGISTRY,
}

# As the live consumer decodes: a source's own events and the system events (signed
# checkpoints) every source publishes, whose streams are tracked without a document.
DECODERS: Mapping[str, EventRegistry] = {
    source: registry.merge(SYSTEM_EVENTS) for source, registry in SOURCES.items()
}

UNIT_NAMES = {
    "punjab": "Punjab",
    "sindh": "Sindh",
    "khyber-pakhtunkhwa": "Khyber Pakhtunkhwa",
    "balochistan": "Balochistan",
    "ajk": "AJK",
    "gilgit-baltistan": "Gilgit-Baltistan",
    "ncsw": "NCSW",
    "mljhr": "MLJHR",
}

DocumentKind = Literal["meeting", "resolution", "notification"]


class Doc(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- documents ----------------------------------------------------------------------------


class AttendeeDoc(Doc):
    name: str
    role: str
    unit: str


class MeetingDoc(Doc):
    meeting_id: str
    version: int  # events of the meeting's stream applied
    status: str  # scheduled, held, cancelled
    scheduled_for: date | None = None
    held_on: date | None = None
    host_unit: str | None = None
    venue: str | None = None
    occasion: str | None = None
    attendees: tuple[AttendeeDoc, ...] = ()
    agenda: tuple[str, ...] = ()
    reschedules: int = 0
    cancellation_reason: str | None = None
    minutes_published_at: str | None = None
    created_at: str  # instants are the envelope's canonical UTC strings (sortable as text)
    updated_at: str

    @property
    def day(self) -> date | None:
        """The day it was held, or is planned for."""
        return self.held_on or self.scheduled_for


class RoundDoc(Doc):
    """One circulation of a resolution for feedback."""

    round: int
    circulated_at: str
    participants: tuple[str, ...]
    feedback_due: date


class FeedbackDoc(Doc):
    round: int
    unit: str
    person: str
    position: str  # endorse, amend, object
    comments: str | None
    given_at: str


class SignatoryDoc(Doc):
    name: str
    role: str
    unit: str


class ActionDoc(Doc):
    action_id: str
    unit: str
    description: str
    due_on: date
    status: str = "not_started"  # not_started, in_progress, completed, blocked
    percent: int = 0
    narrative: str | None = None
    evidence: tuple[str, ...] = ()
    reports: int = 0
    last_reported_at: str | None = None
    completed_at: str | None = None


class ResolutionDoc(Doc):
    resolution_id: str
    version: int
    meeting_id: str
    number: int
    title: str
    passed_on: date
    priority_area: str
    commitments: tuple[str, ...]
    responsible_units: tuple[str, ...]
    status: str  # passed, circulated, approved, signed, action_plan_adopted, closed
    amendments: int = 0
    rounds: tuple[RoundDoc, ...] = ()
    feedback: tuple[FeedbackDoc, ...] = ()
    approved_at: str | None = None
    signed_on: date | None = None
    signatories: tuple[SignatoryDoc, ...] = ()
    quarter: str | None = None  # the quarter of the adopted action plan
    actions: tuple[ActionDoc, ...] = ()
    outcome: str | None = None
    closing_reason: str | None = None
    superseded_by: str | None = None
    closed_at: str | None = None
    passed_at: str
    updated_at: str

    @property
    def reference(self) -> str:
        return resolution_reference(self.passed_on, self.number)

    @property
    def current_round(self) -> RoundDoc | None:
        return self.rounds[-1] if self.rounds else None

    def current_positions(self) -> dict[str, FeedbackDoc]:
        """Each unit's latest feedback in the latest round (earlier ones stay in history)."""
        latest = self.current_round
        if latest is None:
            return {}
        return {item.unit: item for item in self.feedback if item.round == latest.round}


class NotificationDoc(Doc):
    """One delivery: a message to one recipient by one channel, and how it went."""

    delivery_id: str
    version: int
    kind: str  # invitation, feedback_request, … (NotificationKind)
    channel: str  # email, webhook
    unit: str
    person: str | None  # None for a unit's webhook
    address: str
    subject: str
    cause_event_id: str
    cause_type: str
    cause_source: str
    status: str  # sent, failed (a failed delivery may be sent again later)
    rounds: int = 1  # rounds of attempts; each ends in one event
    attempts: int  # over every round
    error: str | None = None  # the last failed round's error, while it is failed
    first_at: str
    sent_at: str | None = None
    updated_at: str


Document = MeetingDoc | ResolutionDoc | NotificationDoc
D = TypeVar("D", MeetingDoc, ResolutionDoc, NotificationDoc)


@dataclass(frozen=True)
class DocumentKey:
    kind: DocumentKind
    entity_id: str


def key_of(document: Document) -> DocumentKey:
    if isinstance(document, MeetingDoc):
        return DocumentKey("meeting", document.meeting_id)
    if isinstance(document, ResolutionDoc):
        return DocumentKey("resolution", document.resolution_id)
    return DocumentKey("notification", document.delivery_id)


DOCUMENT_MODELS: Mapping[str, type[Document]] = {
    "meeting": MeetingDoc,
    "resolution": ResolutionDoc,
    "notification": NotificationDoc,
}


class ActorDoc(Doc):
    subject: str
    unit: str
    role: str


class TimelineEntry(Doc):
    """One event as it appears on an entity's audit timeline."""

    entity_id: str
    primary: bool  # the entity is the event's own aggregate (not a related one)
    source: str
    position: int
    stream_id: str
    stream_version: int
    event_id: str
    type: str
    occurred_at: str
    recorded_at: str
    actor: ActorDoc
    correlation_id: str
    summary: str

    @property
    def order(self) -> tuple[str, str, int]:
        return (self.recorded_at, self.source, self.position)


class UnprojectableEvent(Exception):
    """An event that cannot follow what its stream said before (a broken stream)."""


# --- projecting one event -----------------------------------------------------------------

MEETING_EVENTS = meeting_events.REGISTRY.event_types.values()
RESOLUTION_EVENTS = resolution_events.REGISTRY.event_types.values()
DELIVERY_EVENTS = (notification_events.NotificationSent, notification_events.NotificationFailed)
# Each event class of a source with documents: its document's kind and the id field naming it.
DOCUMENT_OF: Mapping[type[DomainEvent], tuple[DocumentKind, str]] = {
    **dict.fromkeys(MEETING_EVENTS, ("meeting", "meeting_id")),
    **dict.fromkeys(RESOLUTION_EVENTS, ("resolution", "resolution_id")),
    **dict.fromkeys(DELIVERY_EVENTS, ("notification", "delivery_id")),
}


def document_key(event: DomainEvent) -> DocumentKey | None:
    """The document an event changes; None for events of a source without documents."""
    found = DOCUMENT_OF.get(type(event))
    if found is None:
        return None
    kind, id_field = found
    return _document_key(kind, getattr(event, id_field))


@functools.lru_cache(maxsize=4096)
def _document_key(kind: DocumentKind, entity_id: object) -> DocumentKey:
    # Cached: a rebuild asks for an event's key three times, and an entity has several events
    # in a row; turning a UUID into text is the costly part.
    return DocumentKey(kind, str(entity_id))


@dataclass(frozen=True)
class Timeline:
    """One event on the audit timeline: its entry on its own entity's timeline, then on each
    of the entities it concerns. The entries differ only in ``entity_id`` and ``primary``."""

    entity_ids: tuple[str, ...]  # the event's own entity first
    # Every other field of a ``TimelineEntry``, in its order, as values whose JSON is the
    # field's (the ids as UUIDs: rendered, never turned into ``str`` on the way).
    shared: Mapping[str, Any]

    def entries(self) -> tuple[TimelineEntry, ...]:
        """The entries as a reader of the stored rows gets them."""
        return tuple(TimelineEntry.model_validate_json(entry) for _, _, entry in self.rows())

    def rows(self) -> list[tuple[str, bool, str]]:
        """Each entry as (entity id, primary, its JSON as ``model_dump_json`` renders it).

        The shared fields are rendered once for all the entries, with no entry built, by
        pydantic's own serializer: the stored rows are what a rebuild writes millions of.
        """
        shared = to_json(self.shared)[1:].decode()  # without its opening brace
        return [
            (
                entity,
                index == 0,
                f'{{"entity_id":{to_json(entity).decode()},"primary":{_FLAG[index == 0]},{shared}',
            )
            for index, entity in enumerate(self.entity_ids)
        ]


_FLAG = {True: "true", False: "false"}


@dataclass(frozen=True)
class Change:
    """What one applied event did: its document after it, and its place on the timeline."""

    key: DocumentKey | None
    document: Document | None
    timeline: Timeline


def project(before: Document | None, envelope: Envelope, event: DomainEvent) -> Change:
    """The pure heart of every path: one event applied to its document (None: none yet)."""
    key = document_key(event)
    document: Document | None = None
    if key is not None and key.kind == "meeting":
        if before is not None and not isinstance(before, MeetingDoc):
            raise UnprojectableEvent(f"{key.entity_id} is not a meeting")
        document = evolve_meeting(before, envelope, event)
    elif key is not None and key.kind == "resolution":
        if before is not None and not isinstance(before, ResolutionDoc):
            raise UnprojectableEvent(f"{key.entity_id} is not a resolution")
        document = evolve_resolution(before, envelope, event)
    elif key is not None and key.kind == "notification":
        if before is not None and not isinstance(before, NotificationDoc):
            raise UnprojectableEvent(f"{key.entity_id} is not a delivery")
        document = evolve_notification(before, envelope, event)
    return Change(key, document, timeline_entries(envelope, event, document, key))


def evolve_meeting(doc: MeetingDoc | None, envelope: Envelope, event: DomainEvent) -> MeetingDoc:
    at = _instant(envelope.recorded_at)
    match event:
        case meeting_events.MeetingScheduled():
            if doc is not None:
                raise UnprojectableEvent(f"meeting {event.meeting_id} scheduled twice")
            return MeetingDoc(
                meeting_id=str(event.meeting_id),
                version=envelope.stream_version,
                status="scheduled",
                scheduled_for=event.scheduled_for,
                host_unit=event.host_unit.value,
                venue=event.venue,
                occasion=event.occasion,
                created_at=at,
                updated_at=at,
            )
        case meeting_events.MeetingHeld():
            held = {
                "status": "held",
                "held_on": event.held_on,
                "host_unit": event.host_unit.value,
                "venue": event.venue,
                "occasion": event.occasion,
                "attendees": tuple(
                    AttendeeDoc(name=a.name, role=a.role, unit=a.unit.value)
                    for a in event.attendees
                ),
                "agenda": tuple(event.agenda),
            }
            if doc is None:  # recorded without being scheduled first
                return MeetingDoc(
                    meeting_id=str(event.meeting_id),
                    version=envelope.stream_version,
                    created_at=at,
                    updated_at=at,
                    **held,
                )
            return _updated(doc, envelope, held)
    if doc is None:
        raise UnprojectableEvent(f"{event.event_type} before the meeting was scheduled")
    match event:
        case meeting_events.MeetingRescheduled():
            return _updated(
                doc,
                envelope,
                {
                    "scheduled_for": event.scheduled_for,
                    "host_unit": event.host_unit.value,
                    "venue": event.venue,
                    "reschedules": doc.reschedules + 1,
                },
            )
        case meeting_events.MeetingCancelled():
            return _updated(
                doc, envelope, {"status": "cancelled", "cancellation_reason": event.reason}
            )
        case meeting_events.MinutesPublished():
            return _updated(doc, envelope, {"minutes_published_at": _instant(envelope.occurred_at)})
    raise UnprojectableEvent(f"not a meeting event: {event.event_type}")


def evolve_resolution(
    doc: ResolutionDoc | None, envelope: Envelope, event: DomainEvent
) -> ResolutionDoc:
    at = _instant(envelope.recorded_at)
    occurred = _instant(envelope.occurred_at)
    if isinstance(event, resolution_events.ResolutionPassed):
        if doc is not None:
            raise UnprojectableEvent(f"resolution {event.resolution_id} passed twice")
        return ResolutionDoc(
            resolution_id=str(event.resolution_id),
            version=envelope.stream_version,
            meeting_id=str(event.meeting_id),
            number=event.number,
            title=event.title,
            passed_on=event.passed_on,
            priority_area=event.priority_area.value,
            commitments=tuple(commitment.instrument for commitment in event.commitments),
            responsible_units=tuple(unit.value for unit in event.responsible_units),
            status="passed",
            passed_at=at,
            updated_at=at,
        )
    if doc is None:
        raise UnprojectableEvent(f"{event.event_type} before the resolution was passed")
    match event:
        case resolution_events.ResolutionCirculated():
            round_doc = RoundDoc(
                round=len(doc.rounds) + 1,
                circulated_at=occurred,
                participants=tuple(unit.value for unit in event.participants),
                feedback_due=event.feedback_due,
            )
            return _updated(
                doc, envelope, {"status": "circulated", "rounds": (*doc.rounds, round_doc)}
            )
        case resolution_events.FeedbackReceived():
            feedback = FeedbackDoc(
                round=len(doc.rounds),
                unit=event.unit.value,
                person=event.person,
                position=event.position.value,
                comments=event.comments,
                given_at=occurred,
            )
            return _updated(doc, envelope, {"feedback": (*doc.feedback, feedback)})
        case resolution_events.ResolutionAmended():
            return _updated(doc, envelope, {"title": event.title, "amendments": doc.amendments + 1})
        case resolution_events.ResolutionApproved():
            return _updated(doc, envelope, {"status": "approved", "approved_at": occurred})
        case resolution_events.ResolutionSigned():
            signatories = tuple(
                SignatoryDoc(name=s.name, role=s.role, unit=s.unit.value) for s in event.signatories
            )
            return _updated(
                doc,
                envelope,
                {"status": "signed", "signed_on": event.signed_on, "signatories": signatories},
            )
        case resolution_events.ActionPlanAdopted():
            actions = tuple(
                ActionDoc(
                    action_id=action.action_id,
                    unit=action.unit.value,
                    description=action.description,
                    due_on=action.due_on,
                )
                for action in event.actions
            )
            return _updated(
                doc,
                envelope,
                {"status": "action_plan_adopted", "quarter": event.quarter, "actions": actions},
            )
        case resolution_events.ProgressReported():
            if not any(action.action_id == event.action_id for action in doc.actions):
                raise UnprojectableEvent(f"progress on unknown action {event.action_id!r}")
            completed = event.status is resolution_events.ProgressStatus.COMPLETED
            actions = tuple(
                action.model_copy(
                    update={
                        "status": event.status.value,
                        "percent": event.percent,
                        "narrative": event.narrative,
                        "evidence": tuple(event.evidence),
                        "reports": action.reports + 1,
                        "last_reported_at": occurred,
                        "completed_at": action.completed_at or (occurred if completed else None),
                    }
                )
                if action.action_id == event.action_id
                else action
                for action in doc.actions
            )
            return _updated(doc, envelope, {"actions": actions})
        case resolution_events.ResolutionClosed():
            return _updated(
                doc,
                envelope,
                {
                    "status": "closed",
                    "outcome": event.outcome.value,
                    "closing_reason": event.reason,
                    "superseded_by": None
                    if event.superseded_by is None
                    else str(event.superseded_by),
                    "closed_at": occurred,
                },
            )
    raise UnprojectableEvent(f"not a resolution event: {event.event_type}")


def evolve_notification(
    doc: NotificationDoc | None, envelope: Envelope, event: DomainEvent
) -> NotificationDoc:
    if not isinstance(event, DELIVERY_EVENTS):
        raise UnprojectableEvent(f"not a delivery event: {event.event_type}")
    at = _instant(envelope.recorded_at)
    sent = isinstance(event, notification_events.NotificationSent)
    outcome: dict[str, object] = {
        "status": "sent" if sent else "failed",
        "error": None if sent else getattr(event, "error"),  # noqa: B009
        "sent_at": _instant(envelope.occurred_at) if sent else None,
    }
    if doc is None:
        return NotificationDoc(
            delivery_id=str(event.delivery_id),
            version=envelope.stream_version,
            kind=event.kind.value,
            channel=event.channel.value,
            unit=event.unit.value,
            person=event.person,
            address=event.address,
            subject=event.subject,
            cause_event_id=str(event.cause_event_id),
            cause_type=event.cause_type,
            cause_source=event.cause_source,
            attempts=event.attempts,
            first_at=at,
            updated_at=at,
            **outcome,
        )
    if doc.status == "sent":
        raise UnprojectableEvent(f"delivery {doc.delivery_id} had already been sent")
    again = {**outcome, "rounds": doc.rounds + 1, "attempts": doc.attempts + event.attempts}
    return _updated(doc, envelope, again)


def _updated(doc: D, envelope: Envelope, changes: dict[str, object]) -> D:
    # Not validated again: every value comes from an event validated when it was decoded (or
    # from the document itself), and a rebuild updates documents millions of times. The
    # projection tests read every document back through its model (``read_document``).
    return doc.model_copy(
        update={
            **changes,
            "version": envelope.stream_version,
            "updated_at": _instant(envelope.recorded_at),
        }
    )


# An event's instants are formatted for its document and for each of its timeline entries:
# remembered for the few events just applied, as a rebuild formats millions.
@functools.lru_cache(maxsize=64)
def _instant(value: datetime) -> str:
    return format_instant(value)


# --- the audit timeline -------------------------------------------------------------------


def timeline_entries(
    envelope: Envelope, event: DomainEvent, document: Document | None, key: DocumentKey | None
) -> Timeline:
    """The event on its own entity's timeline and on those of the entities it concerns."""
    primary = key.entity_id if key is not None else envelope.stream_id
    related = sorted(related_entities(event) - {primary})
    actor = envelope.actor
    return Timeline(
        (primary, *related),
        {
            "source": envelope.source,
            "position": envelope.position,
            "stream_id": envelope.stream_id,
            "stream_version": envelope.stream_version,
            "event_id": envelope.event_id,
            "type": envelope.type,
            "occurred_at": _instant(envelope.occurred_at),
            "recorded_at": _instant(envelope.recorded_at),
            "actor": _actor(actor.subject, actor.unit, actor.role),
            "correlation_id": envelope.correlation_id,
            "summary": summarize(envelope, event, document),
        },
    )


@functools.lru_cache(maxsize=1024)
def _actor(subject: str, unit: Unit, role: Role) -> Mapping[str, str]:
    # Shared by every entry of the same person (few people act many times); never changed.
    return {"subject": subject, "unit": unit.value, "role": role.value}


def related_entities(event: DomainEvent) -> set[str]:
    """Other entities whose timeline shows the event: a meeting, or units (by their slug)."""
    match event:
        case resolution_events.ResolutionPassed():
            return {str(event.meeting_id)}
        case resolution_events.FeedbackReceived() | resolution_events.ProgressReported():
            return {event.unit.value}
        case resolution_events.ActionPlanAdopted():
            return {action.unit.value for action in event.actions}
        case (
            meeting_events.MeetingScheduled()
            | meeting_events.MeetingRescheduled()
            | meeting_events.MeetingHeld()
        ):
            return {event.host_unit.value}
        case notification_events.NotificationSent() | notification_events.NotificationFailed():
            return {event.unit.value}
        case notification_events.ReminderIssued():
            concerned = {event.unit.value}
            if event.resolution_id is not None:
                concerned.add(str(event.resolution_id))
            return concerned
    return set()


POSITION_PHRASES = {"endorse": "endorses", "amend": "asks to amend", "object": "objects to"}


def summarize(envelope: Envelope, event: DomainEvent, document: Document | None) -> str:
    """One line a person reads on the timeline."""
    resolution = (
        f"resolution {document.reference}" if isinstance(document, ResolutionDoc) else "resolution"
    )
    match event:
        case meeting_events.MeetingScheduled():
            occasion = f" ({event.occasion})" if event.occasion else ""
            return (
                f"Meeting scheduled for {event.scheduled_for} at {event.venue}, hosted by "
                f"{unit_name(event.host_unit)}{occasion}"
            )
        case meeting_events.MeetingRescheduled():
            return (
                f"Meeting rescheduled to {event.scheduled_for} at {event.venue}, hosted by "
                f"{unit_name(event.host_unit)}: {_clip(event.reason)}"
            )
        case meeting_events.MeetingCancelled():
            return f"Meeting cancelled: {_clip(event.reason)}"
        case meeting_events.MeetingHeld():
            units = len({attendee.unit for attendee in event.attendees})
            return (
                f"Meeting held on {event.held_on} at {event.venue}, hosted by "
                f"{unit_name(event.host_unit)}: {len(event.attendees)} attendees from "
                f"{units} unit{'s' if units != 1 else ''}"
            )
        case meeting_events.MinutesPublished():
            return "Minutes published"
        case resolution_events.ResolutionPassed():
            return (
                f"Resolution {event.reference} passed ({event.priority_area.value}): "
                f"{_clip(event.title)}"
            )
        case resolution_events.ResolutionCirculated():
            return (
                f"{resolution.capitalize()} circulated to {len(event.participants)} units, "
                f"feedback due {event.feedback_due}"
            )
        case resolution_events.FeedbackReceived():
            return (
                f"{unit_name(event.unit)} ({event.person}) "
                f"{POSITION_PHRASES[event.position.value]} {resolution}"
            )
        case resolution_events.ResolutionAmended():
            return f"{resolution.capitalize()} amended: {_clip(event.reason)}"
        case resolution_events.ResolutionApproved():
            return f"{resolution.capitalize()} approved"
        case resolution_events.ResolutionSigned():
            count = len(event.signatories)
            return (
                f"{resolution.capitalize()} signed on {event.signed_on} by {count} "
                f"signator{'ies' if count != 1 else 'y'}"
            )
        case resolution_events.ActionPlanAdopted():
            names = sorted({unit_name(action.unit) for action in event.actions})
            return (
                f"Action plan for {event.quarter} adopted on {resolution}: "
                f"{len(event.actions)} action{'s' if len(event.actions) != 1 else ''} "
                f"for {', '.join(names)}"
            )
        case resolution_events.ProgressReported():
            status = event.status.value.replace("_", " ")
            return (
                f"Action {event.action_id} of {resolution} ({unit_name(event.unit)}): "
                f"{status}, {event.percent}%: {_clip(event.narrative, 80)}"
            )
        case resolution_events.ResolutionClosed():
            outcome = event.outcome.value
            return f"{resolution.capitalize()} closed as {outcome}: {_clip(event.reason)}"
        case notification_events.NotificationSent():
            return (
                f"{_phrase(event.kind)} {CHANNEL_VERBS.get(event.channel, 'sent')} to "
                f"{_recipient(event)}: {_clip(event.subject, 80)}"
            )
        case notification_events.NotificationFailed():
            tries = f"{event.attempts} attempt{'s' if event.attempts != 1 else ''}"
            return (
                f"{_phrase(event.kind)} to {_recipient(event)} by {event.channel.value} failed "
                f"after {tries}: {_clip(event.error, 80)}"
            )
        case notification_events.ReminderIssued():
            about = event.quarter or event.action_id or "feedback"
            return (
                f"{_phrase(event.reminder_kind)} reminder for {unit_name(event.unit)} "
                f"({about}), due {event.due_on}"
            )
    return f"{envelope.type} ({envelope.source}, {envelope.stream_id} v{envelope.stream_version})"


CHANNEL_VERBS = {"email": "emailed", "webhook": "posted by webhook"}


def _phrase(kind: str) -> str:
    return kind.replace("_", " ").capitalize()


def _recipient(
    event: notification_events.NotificationSent | notification_events.NotificationFailed,
) -> str:
    unit = unit_name(event.unit)
    return f"{event.person} ({unit})" if event.person else unit


def unit_name(unit: str) -> str:
    return UNIT_NAMES.get(unit, unit)


def _clip(text: str, limit: int = 120) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# --- the in-memory model ------------------------------------------------------------------


@dataclass(frozen=True)
class Documents:
    """What reports are computed from: every meeting and resolution document."""

    meetings: Mapping[str, MeetingDoc]
    resolutions: Mapping[str, ResolutionDoc]
    notifications: Mapping[str, NotificationDoc] = field(default_factory=dict)


@dataclass(frozen=True)
class Skipped:
    reason: str  # duplicate, stream_gap, undecodable, unknown_source, unknown_type, ...
    detail: str


@dataclass(frozen=True)
class Passed:
    """A system event (a signed checkpoint) applied: its stream moved on, nothing else."""


PASSED = Passed()


@dataclass
class SourceProgress:
    last_position: int = 0
    events_applied: int = 0


@dataclass
class Model:
    """Documents, timeline and per-stream checkpoints folded from envelopes in memory."""

    meetings: dict[str, MeetingDoc] = field(default_factory=dict)
    resolutions: dict[str, ResolutionDoc] = field(default_factory=dict)
    notifications: dict[str, NotificationDoc] = field(default_factory=dict)
    timeline: dict[str, list[TimelineEntry]] = field(default_factory=dict)
    streams: dict[str, int] = field(default_factory=dict)
    sources: dict[str, SourceProgress] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    keep_timeline: bool = True  # a rebuild writes entries out as it goes instead

    @property
    def documents(self) -> Documents:
        return Documents(self.meetings, self.resolutions, self.notifications)

    def _kind(self, kind: str) -> dict[str, Any]:
        if kind == "meeting":
            return self.meetings
        if kind == "resolution":
            return self.resolutions
        return self.notifications

    @property
    def events_applied(self) -> int:
        return sum(progress.events_applied for progress in self.sources.values())

    @property
    def document_count(self) -> int:
        return len(self.meetings) + len(self.resolutions) + len(self.notifications)

    def document(self, key: DocumentKey) -> Document | None:
        found: Document | None = self._kind(key.kind).get(key.entity_id)
        return found

    def put(self, document: Document) -> None:
        key = key_of(document)
        self._kind(key.kind)[key.entity_id] = document

    def take(self, key: DocumentKey) -> Document:
        """Removes the document from the model (e.g. to keep it elsewhere meanwhile)."""
        document: Document = self._kind(key.kind).pop(key.entity_id)
        return document

    def apply(self, envelope: Envelope, event: DomainEvent) -> Change | Skipped | Passed:
        """Apply one event once, in stream order, as the live consumer does."""
        last = self.streams.get(envelope.stream_id, 0)
        if envelope.stream_version <= last:
            return self._skip("duplicate", f"{envelope.stream_id} is at version {last}")
        if envelope.stream_version != last + 1:
            return self._skip(
                "stream_gap",
                f"{envelope.stream_id}: expected {last + 1}, got {envelope.stream_version}",
            )
        if SYSTEM_EVENTS.knows(envelope.type):
            self._moved_on(envelope)
            return PASSED
        key = document_key(event)
        try:
            change = project(None if key is None else self.document(key), envelope, event)
        except UnprojectableEvent as error:
            return self._skip("unprojectable", str(error))
        if change.key is not None and change.document is not None:
            self._kind(change.key.kind)[change.key.entity_id] = change.document
        if self.keep_timeline:
            for entry in change.timeline.entries():
                self.timeline.setdefault(entry.entity_id, []).append(entry)
        self._moved_on(envelope)
        return change

    def _moved_on(self, envelope: Envelope) -> None:
        self.streams[envelope.stream_id] = envelope.stream_version
        progress = self.sources.setdefault(envelope.source, SourceProgress())
        progress.last_position = max(progress.last_position, envelope.position)
        progress.events_applied += 1

    def apply_json(self, data: JsonObject | str | bytes) -> Change | Skipped | Passed:
        decoded = decode(data)
        if isinstance(decoded, Skipped):
            self.skipped[decoded.reason] += 1
            return decoded
        return self.apply(*decoded)

    def timeline_of(self, entity_id: str) -> list[TimelineEntry]:
        return sorted(self.timeline.get(entity_id, ()), key=lambda entry: entry.order)

    def recent_events(self, limit: int) -> list[TimelineEntry]:
        primary = [e for entries in self.timeline.values() for e in entries if e.primary]
        return sorted(primary, key=lambda entry: entry.order, reverse=True)[:limit]

    def _skip(self, reason: str, detail: str) -> Skipped:
        self.skipped[reason] += 1
        return Skipped(reason, detail)


def decode(data: JsonObject | str | bytes | Envelope) -> tuple[Envelope, DomainEvent] | Skipped:
    """An envelope and its upcast event, or why it cannot be projected."""
    try:
        if isinstance(data, Envelope):
            envelope = data
        elif isinstance(data, (str, bytes)):
            envelope = Envelope.model_validate_json(data)
        else:
            envelope = Envelope.model_validate(data)
    except (ValidationError, json.JSONDecodeError) as error:
        return Skipped("undecodable", str(error).splitlines()[0])
    if isinstance(data, (str, bytes)) and holds_nul(envelope, data):
        return Skipped("undecodable", NUL_HELD)
    registry = DECODERS.get(envelope.source)
    if registry is None:
        return Skipped("unknown_source", f"reporting does not read {envelope.source!r}")
    try:
        return envelope, envelope.decode(registry)
    except EventDecodingError as error:
        reason = "bad_payload" if registry.knows(envelope.type) else "unknown_type"
        return Skipped(reason, str(error))


NUL_HELD = "a string holds a NUL character"


def holds_nul(envelope: Envelope, rendered: str | bytes) -> bool:
    """Whether a string of the envelope (``rendered``: its JSON) holds a NUL character.

    PostgreSQL's text cannot hold one, so such an event is never projected: the live consumer
    dead-letters it and a rebuild skips it, and both copies stay alike.
    """
    return _may_hold_nul(rendered) and _holds_nul(envelope.to_json())


def _may_hold_nul(data: str | bytes) -> bool:
    # JSON writes a NUL escaped. Most envelopes hold no backslash at all, and one byte is
    # searched for faster than the escape's six.
    if isinstance(data, bytes):
        return b"\\" in data and b"\\u0000" in data
    return "\\" in data and "\\u0000" in data


def _holds_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def model_from_envelopes(
    envelopes: Iterable[JsonObject | str | bytes], *, keep_timeline: bool = True
) -> Model:
    """Fold envelopes (their JSON form) into a model, with no database and no broker.

    Each source's events must come in position order; sources may interleave in any way.
    What cannot be projected is counted in ``Model.skipped`` by reason, never raised.
    """
    model = Model(keep_timeline=keep_timeline)
    for data in envelopes:
        model.apply_json(data)
    return model
