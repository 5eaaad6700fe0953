"""The sample history: the IPMG's quarterly cycle from late 2015 to mid 2017, as data.

Meetings rotate among the units, starting with the one held on 26 November 2015 in Azad Jammu
& Kashmir during the 16 Days of Activism. Resolutions follow the group's priority areas (CEDAW
commitments, independent Women Development Departments, joint leadership capacity building,
the 2002 national policy and plan of action); they are circulated, answered, amended,
approved, signed and turned into action plans whose progress leaves some actions completed,
some late and some blocked. Names are roles, not people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JsonBody = dict[str, Any]
PROVINCES = ["punjab", "sindh", "khyber-pakhtunkhwa", "balochistan", "ajk", "gilgit-baltistan"]


@dataclass(frozen=True)
class SampleResolution:
    key: str
    passed: JsonBody
    circulate: JsonBody | None = None
    feedback: list[JsonBody] = field(default_factory=list)
    amend: JsonBody | None = None
    approve: bool = False
    sign: JsonBody | None = None
    action_plan: JsonBody | None = None
    progress: list[JsonBody] = field(default_factory=list)
    close: JsonBody | None = None


@dataclass(frozen=True)
class SampleMeeting:
    key: str
    schedule: JsonBody
    held: JsonBody | None = None
    reschedule: JsonBody | None = None
    minutes: str | None = None
    resolutions: list[SampleResolution] = field(default_factory=list)


def attendance(*units: str) -> list[JsonBody]:
    people = [{"name": "Chairperson, NCSW", "role": "chairperson", "unit": "ncsw"}]
    for unit in units:
        people.append(
            {"name": f"Minister, Women Development ({unit})", "role": "minister", "unit": unit}
        )
        people.append(
            {"name": f"Secretary, Women Development ({unit})", "role": "secretary", "unit": unit}
        )
    people.append({"name": "Representative, MLJHR", "role": "secretary", "unit": "mljhr"})
    return people


def feedback(unit: str, position: str, comments: str | None = None) -> JsonBody:
    body: JsonBody = {"unit": unit, "person": f"Focal person, {unit} WDD", "position": position}
    if comments:
        body["comments"] = comments
    return body


def action(action_id: str, unit: str, description: str, due_on: str) -> JsonBody:
    return {"action_id": action_id, "unit": unit, "description": description, "due_on": due_on}


def progress(action_id: str, unit: str, status: str, percent: int, narrative: str) -> JsonBody:
    return {
        "action_id": action_id,
        "unit": unit,
        "status": status,
        "percent": percent,
        "narrative": narrative,
    }


def signed(on: str) -> JsonBody:
    return {
        "signed_on": on,
        "signatories": [
            {"name": "Chairperson, NCSW", "role": "chairperson", "unit": "ncsw"},
            *(
                {"name": f"Minister, Women Development ({unit})", "role": "minister", "unit": unit}
                for unit in PROVINCES
            ),
        ],
    }


def resolution(number: int, title: str, text: str, area: str, units: list[str]) -> JsonBody:
    return {
        "number": number,
        "title": title,
        "text": text,
        "priority_area": area,
        "responsible_units": units,
    }


MEETINGS: list[SampleMeeting] = [
    SampleMeeting(
        key="2015-Q4",
        schedule={
            "scheduled_for": "2015-11-26",
            "host_unit": "ajk",
            "venue": "Muzaffarabad",
            "occasion": "16 Days of Activism against Gender-Based Violence",
        },
        held={
            "held_on": "2015-11-26",
            "host_unit": "ajk",
            "venue": "Muzaffarabad",
            "occasion": "16 Days of Activism against Gender-Based Violence",
            "attendees": attendance(*PROVINCES),
            "agenda": [
                "Achievements and renewed commitments of the 16 Days campaign",
                "CEDAW periodic reporting",
                "Independent Women Development Departments",
            ],
        },
        minutes="The group shared achievements and renewed its commitments to end "
        "discrimination against women and girls, and passed two joint resolutions.",
        resolutions=[
            SampleResolution(
                key="cedaw-reporting",
                passed=resolution(
                    1,
                    "Quarterly reporting on CEDAW concluding observations",
                    "Every unit reports each quarter on its implementation of the CEDAW "
                    "concluding observations, using one common format.",
                    "cedaw",
                    PROVINCES,
                ),
                circulate={"participants": PROVINCES, "feedback_due": "2015-12-20"},
                feedback=[
                    feedback("punjab", "endorse"),
                    feedback("sindh", "amend", "Add a common reporting template"),
                    feedback("khyber-pakhtunkhwa", "endorse"),
                    feedback("balochistan", "object", "Capacity to report is limited"),
                    feedback("balochistan", "endorse", "Endorsed once the template was agreed"),
                    feedback("ajk", "endorse"),
                ],
                amend={
                    "text": "Every unit reports each quarter on its implementation of the "
                    "CEDAW concluding observations, using the common template "
                    "annexed to this resolution.",
                    "reason": "Sindh's feedback: a common template",
                },
                approve=True,
                sign=signed("2016-01-15"),
                action_plan={
                    "quarter": "2016-Q1",
                    "actions": [
                        action(
                            "CEDAW-PB",
                            "punjab",
                            "Submit the first quarterly CEDAW report",
                            "2016-03-31",
                        ),
                        action(
                            "CEDAW-SD",
                            "sindh",
                            "Submit the first quarterly CEDAW report",
                            "2016-03-31",
                        ),
                        action(
                            "CEDAW-KP",
                            "khyber-pakhtunkhwa",
                            "Submit the first quarterly CEDAW report",
                            "2016-03-31",
                        ),
                        action(
                            "CEDAW-BL",
                            "balochistan",
                            "Submit the first quarterly CEDAW report",
                            "2016-03-31",
                        ),
                    ],
                },
                progress=[
                    progress("CEDAW-PB", "punjab", "completed", 100, "Report submitted"),
                    progress(
                        "CEDAW-SD",
                        "sindh",
                        "in_progress",
                        60,
                        "Data from two districts outstanding",
                    ),
                    progress("CEDAW-SD", "sindh", "completed", 100, "Report submitted late"),
                    progress(
                        "CEDAW-KP", "khyber-pakhtunkhwa", "completed", 100, "Report submitted"
                    ),
                    progress(
                        "CEDAW-BL", "balochistan", "blocked", 20, "No statistics officer in post"
                    ),
                ],
            ),
            SampleResolution(
                key="independent-wdds",
                passed=resolution(
                    2,
                    "Independent Women Development Departments in every province",
                    "Each province establishes an independent Women Development Department "
                    "with its own budget line and staff.",
                    "independent_wdds",
                    ["punjab", "sindh", "khyber-pakhtunkhwa", "balochistan"],
                ),
                circulate={
                    "participants": ["punjab", "sindh", "khyber-pakhtunkhwa", "balochistan"],
                    "feedback_due": "2015-12-20",
                },
                feedback=[
                    feedback("punjab", "endorse"),
                    feedback("sindh", "endorse"),
                    feedback("khyber-pakhtunkhwa", "amend", "Phase it over two years"),
                ],
                approve=True,
                sign=signed("2016-01-15"),
                action_plan={
                    "quarter": "2016-Q1",
                    "actions": [
                        action(
                            "WDD-KP",
                            "khyber-pakhtunkhwa",
                            "Submit the summary for an independent WDD to the cabinet",
                            "2016-06-30",
                        ),
                        action(
                            "WDD-BL",
                            "balochistan",
                            "Notify the independent WDD and its budget line",
                            "2016-06-30",
                        ),
                    ],
                },
                progress=[
                    progress(
                        "WDD-KP",
                        "khyber-pakhtunkhwa",
                        "in_progress",
                        50,
                        "Summary with the law department",
                    ),
                ],
            ),
        ],
    ),
    SampleMeeting(
        key="2016-Q1",
        schedule={
            "scheduled_for": "2016-03-08",
            "host_unit": "punjab",
            "venue": "Lahore",
            "occasion": "International Women's Day",
        },
        held={
            "held_on": "2016-03-08",
            "host_unit": "punjab",
            "venue": "Lahore",
            "occasion": "International Women's Day",
            "attendees": attendance(
                "punjab", "sindh", "khyber-pakhtunkhwa", "balochistan", "gilgit-baltistan"
            ),
            "agenda": ["Progress on the 2016-Q1 action plan", "Leadership capacity building"],
        },
        resolutions=[
            SampleResolution(
                key="leadership-training",
                passed=resolution(
                    1,
                    "Joint leadership training for women development ministers and secretaries",
                    "NCSW and the units hold joint trainings on advising on and implementing "
                    "national and international commitments.",
                    "leadership_capacity",
                    PROVINCES,
                ),
                circulate={"participants": PROVINCES, "feedback_due": "2016-03-31"},
                feedback=[feedback(unit, "endorse") for unit in PROVINCES],
                approve=True,
                sign=signed("2016-04-10"),
                action_plan={
                    "quarter": "2016-Q2",
                    "actions": [
                        action(
                            "LEAD-NCSW",
                            "ncsw",
                            "Design the joint training curriculum",
                            "2016-05-31",
                        ),
                        action(
                            "LEAD-GB",
                            "gilgit-baltistan",
                            "Host the first regional training",
                            "2016-06-30",
                        ),
                        action("LEAD-SD", "sindh", "Nominate participants", "2016-05-15"),
                    ],
                },
                progress=[
                    progress("LEAD-NCSW", "ncsw", "completed", 100, "Curriculum agreed"),
                    progress("LEAD-SD", "sindh", "completed", 100, "Twelve officers nominated"),
                    progress(
                        "LEAD-GB", "gilgit-baltistan", "blocked", 30, "Venue unavailable in winter"
                    ),
                ],
            ),
        ],
    ),
    SampleMeeting(
        key="2016-Q2",
        schedule={"scheduled_for": "2016-06-10", "host_unit": "sindh", "venue": "Karachi"},
        reschedule={
            "scheduled_for": "2016-06-20",
            "host_unit": "sindh",
            "venue": "Karachi",
            "reason": "The budget session moved",
        },
        held={
            "held_on": "2016-06-20",
            "host_unit": "sindh",
            "venue": "Karachi",
            "attendees": attendance("punjab", "sindh", "balochistan", "ajk"),
            "agenda": [
                "Review of the 2002 National Policy for Development and Empowerment of Women"
            ],
        },
        resolutions=[
            SampleResolution(
                key="npdew-review",
                passed=resolution(
                    1,
                    "Review of the 2002 National Policy and its National Plan of Action",
                    "The units review the 2002 National Policy for Development and "
                    "Empowerment of Women and the National Plan of Action against their "
                    "provincial policies and report gaps.",
                    "national_policy",
                    ["punjab", "sindh", "balochistan", "ajk"],
                ),
                circulate={
                    "participants": ["punjab", "sindh", "balochistan", "ajk"],
                    "feedback_due": "2016-07-15",
                },
                feedback=[
                    feedback("punjab", "endorse"),
                    feedback("sindh", "endorse"),
                    feedback("ajk", "endorse"),
                ],
                approve=True,
                sign=signed("2016-07-30"),
                action_plan={
                    "quarter": "2016-Q3",
                    "actions": [
                        action(
                            "NPA-PB",
                            "punjab",
                            "Gap analysis of the provincial policy",
                            "2016-09-30",
                        ),
                        action("NPA-AJK", "ajk", "Gap analysis of the state policy", "2016-09-30"),
                    ],
                },
                progress=[
                    progress("NPA-PB", "punjab", "in_progress", 40, "Consultations held"),
                ],
            ),
        ],
    ),
    SampleMeeting(
        key="2016-Q3",
        schedule={
            "scheduled_for": "2016-09-15",
            "host_unit": "khyber-pakhtunkhwa",
            "venue": "Peshawar",
        },
        held={
            "held_on": "2016-09-15",
            "host_unit": "khyber-pakhtunkhwa",
            "venue": "Peshawar",
            "attendees": attendance("punjab", "khyber-pakhtunkhwa", "balochistan"),
            "agenda": ["Gender Reform Action Plan follow-up"],
        },
        resolutions=[
            SampleResolution(
                key="grap-follow-up",
                passed=resolution(
                    1,
                    "Follow-up of the Gender Reform Action Plan",
                    "Units report on the Gender Reform Action Plan measures still in force.",
                    "national_policy",
                    ["khyber-pakhtunkhwa", "balochistan"],
                ),
                circulate={
                    "participants": ["khyber-pakhtunkhwa", "balochistan"],
                    "feedback_due": "2016-10-15",
                },
                feedback=[feedback("khyber-pakhtunkhwa", "endorse")],
                close={"outcome": "withdrawn", "reason": "Folded into the national policy review"},
            ),
        ],
    ),
    SampleMeeting(
        key="2016-Q4",
        schedule={
            "scheduled_for": "2016-12-05",
            "host_unit": "balochistan",
            "venue": "Quetta",
            "occasion": "16 Days of Activism against Gender-Based Violence",
        },
        held={
            "held_on": "2016-12-05",
            "host_unit": "balochistan",
            "venue": "Quetta",
            "occasion": "16 Days of Activism against Gender-Based Violence",
            "attendees": attendance(*PROVINCES),
            "agenda": ["A year of quarterly CEDAW reporting"],
        },
        resolutions=[
            SampleResolution(
                key="cedaw-shadow",
                passed=resolution(
                    1,
                    "Provincial input to the CEDAW periodic report",
                    "Units send their input to the federal CEDAW periodic report through NCSW.",
                    "cedaw",
                    ["punjab", "sindh", "khyber-pakhtunkhwa", "balochistan"],
                ),
                circulate={
                    "participants": ["punjab", "sindh", "khyber-pakhtunkhwa", "balochistan"],
                    "feedback_due": "2017-01-10",
                },
                feedback=[
                    feedback("punjab", "endorse"),
                    feedback("sindh", "endorse"),
                    feedback("khyber-pakhtunkhwa", "endorse"),
                    feedback("balochistan", "endorse"),
                ],
                approve=True,
                sign=signed("2017-01-20"),
                action_plan={
                    "quarter": "2017-Q1",
                    "actions": [
                        action("CR-PB", "punjab", "Send provincial input", "2017-03-15"),
                        action("CR-SD", "sindh", "Send provincial input", "2017-03-15"),
                        action(
                            "CR-KP", "khyber-pakhtunkhwa", "Send provincial input", "2017-03-15"
                        ),
                        action("CR-BL", "balochistan", "Send provincial input", "2017-03-15"),
                    ],
                },
                progress=[
                    progress("CR-PB", "punjab", "completed", 100, "Input sent"),
                    progress("CR-SD", "sindh", "completed", 100, "Input sent"),
                    progress("CR-KP", "khyber-pakhtunkhwa", "completed", 100, "Input sent"),
                    progress("CR-BL", "balochistan", "completed", 100, "Input sent"),
                ],
                close={"outcome": "implemented", "reason": "All inputs received"},
            ),
        ],
    ),
    SampleMeeting(
        key="2017-Q1",
        schedule={
            "scheduled_for": "2017-03-20",
            "host_unit": "gilgit-baltistan",
            "venue": "Gilgit",
        },
        held={
            "held_on": "2017-03-20",
            "host_unit": "gilgit-baltistan",
            "venue": "Gilgit",
            "attendees": attendance("gilgit-baltistan", "ajk", "punjab"),
            "agenda": ["Women's leadership in local government"],
        },
        resolutions=[
            SampleResolution(
                key="local-government",
                passed=resolution(
                    1,
                    "Women's leadership in local government",
                    "Units train newly elected women councillors and report participation.",
                    "leadership_capacity",
                    ["gilgit-baltistan", "ajk", "punjab"],
                ),
                circulate={
                    "participants": ["gilgit-baltistan", "ajk", "punjab"],
                    "feedback_due": "2017-04-20",
                },
                feedback=[
                    feedback("gilgit-baltistan", "endorse"),
                    feedback("ajk", "amend", "Include AJK's councils"),
                ],
            ),
        ],
    ),
    SampleMeeting(
        key="2017-Q2",
        schedule={"scheduled_for": "2017-06-15", "host_unit": "ncsw", "venue": "Islamabad"},
    ),
]
