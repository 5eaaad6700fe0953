"""HTTP API of the meetings service: the meeting lifecycle as commands, and its state."""

from __future__ import annotations

from fastapi import APIRouter

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
        summary="Schedule a quarterly meeting",
    )
    changes: list[tuple[str, type[Command], str]] = [
        ("reschedule", RescheduleMeeting, "Move a scheduled meeting"),
        ("cancel", CancelMeeting, "Cancel a scheduled meeting"),
        ("held", HoldMeeting, "Record that the meeting was held, with its attendance"),
        ("minutes", PublishMinutes, "Publish the minutes of a held meeting"),
    ]
    for path, command, summary in changes:
        add_command_route(
            routes,
            f"/meetings/{{meeting_id}}/{path}",
            aggregate=MEETING,
            command=command,
            id_field="meeting_id",
            summary=summary,
        )
    add_query_routes(routes, "/meetings/{meeting_id}", aggregate=MEETING)
    return routes
