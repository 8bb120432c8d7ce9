"""What the planning API accepts and returns.

`*Create` / `*Update` are the request bodies as documented (unknown fields refused). A body that
carries a document is validated in two parts (see documents.py): its small members by `*Fields`,
which do not contain the document, and the document only as "a JSON object" — PostgreSQL parses and
stores it. `*Summary` is a list item, never carrying a document; `*Read` adds the document.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from service.pagination import Page
from service.patterns import WHITESPACE
from service.planning.models import SolutionState
from service.timestamps import Timestamp

# No NUL: PostgreSQL's text cannot hold it, and it is never a meaningful part of a name. Surrounding
# whitespace is stripped, so a name needs one other character (said by the pattern, which is what the
# OpenAPI document shows; min_length alone would document "   " as valid).
Name = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=200,
        pattern=rf"^[^\x00]*[^\x00{WHITESPACE}][^\x00]*$",
    ),
]
JsonObject = dict[str, Any]
_DOCUMENT = (
    "Any JSON object, stored as JSONB: no `\\u0000` and no unpaired surrogate in a string or key, "
    "at most 1,024 levels deep. Numbers come back in JSONB's notation (`1e3` → `1000`)."
)
# What PostgreSQL's JSONB refuses, and so the routes answer with 422 (documents.py, the repository).
Document = Annotated[JsonObject, Field(description=_DOCUMENT)]
# A scenario's request: any JSON object is kept; solving needs the named shape.
SOLVABLE = (
    " To be solved (`POST /api/v1/scenarios/{scenario_id}/solve`) it must be a "
    "[SolveRequest](#/components/schemas/SolveRequest): depots, stops, vehicle types and an optional "
    "matrix, in metres and seconds from the start of the planning day."
)
RequestDocument = Annotated[JsonObject, Field(description=_DOCUMENT + SOLVABLE)]
# What a client may record; a solve also ends `cancelled`.
SolutionStatus = Literal["pending", "running", "succeeded", "failed"]


def _members_are_never_null(schema: dict[str, Any]) -> None:
    """Document what the routes enforce: an optional member may be left out, but never sent as null
    (a patch's null would otherwise read as "clear it", a document's null as "no document")."""
    for member in schema.get("properties", {}).values():
        alternatives = member.get("anyOf")
        if alternatives and {"type": "null"} in alternatives:
            rest = [alternative for alternative in member.pop("anyOf") if alternative != {"type": "null"}]
            if len(rest) == 1:
                member.update(rest[0])
            else:
                member["anyOf"] = rest
        if "default" in member and member["default"] is None:
            del member["default"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_members_are_never_null)


class _Patch(_Body):
    """Every member optional, but one that is sent must not be null: null never clears a field."""

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nulls = [name for name in self.model_fields_set if getattr(self, name) is None]
        if nulls:
            raise ValueError(f"{', '.join(sorted(nulls))} must not be null")
        return self


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class SessionCreate(_Body):
    name: Name


class SessionUpdate(_Patch):
    name: Name | None = None


class SessionRead(_Read):
    id: uuid.UUID
    name: str
    created_at: Timestamp
    updated_at: Timestamp


class ScenarioFields(_Body):
    name: Name


class ScenarioCreate(ScenarioFields):
    request: RequestDocument


class ScenarioPatchFields(_Patch):
    name: Name | None = None


class ScenarioUpdate(ScenarioPatchFields):
    request: RequestDocument | None = None


class ScenarioSummary(_Read):
    id: uuid.UUID
    session_id: uuid.UUID
    name: str
    created_at: Timestamp
    updated_at: Timestamp


class ScenarioRead(ScenarioSummary):
    request: Annotated[JsonObject, Field(description="The current request." + SOLVABLE)]


class SolutionFields(_Body):
    status: SolutionStatus


class SolutionCreate(SolutionFields):
    payload: Document | None = None


class SolutionPatchFields(_Patch):
    status: SolutionStatus | None = None


class SolutionUpdate(SolutionPatchFields):
    payload: Document | None = None


class SolutionSummary(_Read):
    id: uuid.UUID
    scenario_id: uuid.UUID
    status: Annotated[
        SolutionState,
        Field(
            description="`pending` → `running` → `succeeded` | `failed` | `cancelled` for a solve; a recorded "
            "solution has the status it was recorded with."
        ),
    ]
    created_at: Timestamp
    updated_at: Timestamp


class SolveProgress(BaseModel):
    """A running solve's latest progress (written at least once a second)."""

    elapsed_s: float | None = Field(description="Seconds since the solve started.")
    iterations: int | None = Field(description="Search iterations so far.")
    best_distance: int | None = Field(
        description="Metres: the best feasible solution's; null before there is one."
    )
    feasible: bool | None = Field(description="Whether a feasible solution has been found.")


class RoutePlan(BaseModel):
    """One vehicle's route. Times are seconds from the start of the planning day."""

    vehicle_type: str = Field(description="The vehicle type's id in the request.")
    stops: list[str] = Field(description="The stop ids in the order they are visited.")
    distance: int = Field(description="Metres driven, from the depot back to the (end) depot.")
    duration: int = Field(description="Seconds from `start` to `end`: driving, waiting and service.")
    load: list[int] = Field(description="What the vehicle carries, per load dimension (as `capacity`).")
    start: int = Field(description="When the vehicle leaves its depot.")
    end: int = Field(description="When it is back at its (end) depot.")
    arrivals: list[int] = Field(
        description="When service begins at each stop, in `stops` order (after any wait for its time window)."
    )


class SolverStats(BaseModel):
    """The run that produced the solution."""

    name: str = Field(description="The solver: `pyvrp`.")
    version: str = Field(description="Its version.")
    iterations: int = Field(description="Search iterations done.")
    runtime_s: float = Field(description="Seconds of search (the solver's own clock).")
    seed: int = Field(description="The random seed: the same seed and iterations give the same solution.")
    time_limit_s: float = Field(description="The solve's time limit, in seconds.")


_PAYLOAD_EXAMPLE: dict[str, Any] = {
    "feasible": True,
    "distance": 18342,
    "duration": 9120,
    "routes": [
        {
            "vehicle_type": "van",
            "stops": ["s3", "s1"],
            "distance": 9000,
            "duration": 4500,
            "load": [7],
            "start": 25200,
            "end": 29700,
            "arrivals": [26100, 27900],
        }
    ],
    "unassigned": [],
    "solver": {
        "name": "pyvrp",
        "version": "0.14.1",
        "iterations": 12380,
        "runtime_s": 10.0,
        "seed": 1,
        "time_limit_s": 10,
    },
    "scenario_version": "3",
}


class SolutionPayload(BaseModel):
    """What a solve found: its routes, in metres and seconds (times from the start of the planning
    day). A cancelled solve's payload is the best solution found before it stopped."""

    model_config = ConfigDict(json_schema_extra={"examples": [_PAYLOAD_EXAMPLE]})

    feasible: bool = Field(description="Whether every constraint holds (capacities, time windows, shifts).")
    distance: int = Field(description="Metres, all routes together (what the solver minimises).")
    duration: int = Field(description="Seconds, all routes' durations together.")
    routes: list[RoutePlan] = Field(description="One per vehicle used; unused vehicles have none.")
    unassigned: list[str] = Field(
        description="Ids of the stops on no route (not feasibly servable, or optional and not worth it), in request order."
    )
    solver: SolverStats
    scenario_version: str = Field(
        description="The scenario's ETag value when the solve was queued: later edits do not change it."
    )


class SolutionHead(SolutionSummary):
    """A solution without its payload: plus a solve's progress and, when it failed, why."""

    progress: SolveProgress | None = None
    reason: str | None = Field(default=None, description="Why a solve failed, in a short sentence.")


class SolutionRead(SolutionHead):
    payload: Annotated[
        SolutionPayload | JsonObject | None,
        Field(
            description="A solve's result (a SolutionPayload) once it succeeded or was cancelled with a "
            "solution; a recorded solution's payload as it was recorded or last patched (any JSON object); "
            "null when there is none."
        ),
    ]


SessionPage = Page[SessionRead]
ScenarioPage = Page[ScenarioSummary]
SolutionPage = Page[SolutionSummary]
