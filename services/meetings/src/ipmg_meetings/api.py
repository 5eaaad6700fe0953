"""HTTP API of the meetings service: the meeting lifecycle as commands, and its state."""

from __future__ import annotations

from fastapi import APIRouter

from ipmg_meetings.calendar import with_calendar
from ipmg_meetings.domain import (
    CancelMeeting,
    Command,
    HoldMeeting,
    MeetingState,
    PublishMinutes,
    RescheduleMeeting,
    ScheduleMeeting,
    decide,
    evolve,
)
from ipmg_shared.application import AggregateType
from ipmg_shared.command_api import add_command_route, add_query_routes
from ipmg_shared.policy import Action, Permission, Resource

MEETING: AggregateType[MeetingState] = AggregateType(
    name="meeting", initial=MeetingState.initial, evolve=evolve, decide=decide
)


def router() -> APIRouter:
    routes = APIRouter(tags=["meetings"])
    add_command_route(
        routes,
        "/meetings",
        aggregate=MEETING,
        command=ScheduleMeeting,
        id_field="meeting_id",
        creates=True,
        exclude={"calendar"},
        enrich=with_calendar,
        summary="Schedule a quarterly meeting",
        permission=Permission(Resource.MEETING, Action.SCHEDULE),
    )
    changes: list[tuple[str, type[Command], Action, str]] = [
        ("reschedule", RescheduleMeeting, Action.RESCHEDULE, "Move a scheduled meeting"),
        ("cancel", CancelMeeting, Action.CANCEL, "Cancel a scheduled meeting"),
        ("held", HoldMeeting, Action.HOLD, "Record that the meeting was held, with its attendance"),
        (
            "minutes",
            PublishMinutes,
            Action.PUBLISH_MINUTES,
            "Publish the minutes of a held meeting",
        ),
    ]
    for path, command, action, summary in changes:
        add_command_route(
            routes,
            f"/meetings/{{meeting_id}}/{path}",
            aggregate=MEETING,
            command=command,
            id_field="meeting_id",
            summary=summary,
            permission=Permission(Resource.MEETING, action),
        )
    add_query_routes(routes, "/meetings/{meeting_id}", aggregate=MEETING, resource=Resource.MEETING)
    return routes
