"""What the solving API accepts and returns: solutions (recorded or solved), solve options, tickets."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import BaseModel, Field, PlainValidator, StrictInt, WithJsonSchema
from pydantic_core import PydanticCustomError

from service.core.pagination import Page
from service.core.schemas import Body, Document, JsonObject, Patch, Read
from service.core.timestamps import Timestamp
from service.solver.outcome import MAX_SEED, Progress, SolutionStatus
from service.solver.pins import Pin, Pins
from service.solver.plan import SolutionPayload

# What a client may record: a solution it found itself, `succeeded` or `failed`. The other statuses
# belong to solves (`pending`, `running`, and `cancelled` with the best so far).
RECORDABLE = (SolutionStatus.SUCCEEDED, SolutionStatus.FAILED)


def _recordable(value: object) -> SolutionStatus:
    if isinstance(value, str) and value in RECORDABLE:
        return SolutionStatus(value)
    raise PydanticCustomError(
        "recorded_status", "must be succeeded or failed (pending, running and cancelled belong to solves)"
    )


RecordedStatus = Annotated[
    SolutionStatus,
    PlainValidator(_recordable),
    WithJsonSchema(
        {
            "type": "string",
            "enum": [status.value for status in RECORDABLE],
            "description": "`succeeded` or `failed`: `pending`, `running` and `cancelled` belong to solves.",
        }
    ),
]


class SolveOptions(Patch):
    """Strict like the request document: each option a JSON integer literal, never a string, a boolean
    or a whole number written as a float (10.0); an option may be left out, never sent as null."""

    time_limit_s: Annotated[
        StrictInt,
        Field(
            ge=1,
            description="Solver time in seconds, 1 – SOLVE_MAX_TIME_LIMIT_S (300 by default); an integer "
            'literal (`10`, not `10.0`, `"10"` or `true`)',
        ),
    ] = 10
    seed: Annotated[
        StrictInt,
        Field(
            ge=0,
            le=MAX_SEED,
            description="The solver's random seed (same seed and time, same result); an integer literal",
        ),
    ] = 1
    from_solution: uuid.UUID | None = Field(
        default=None,
        description="Re-solve from this plan: a `succeeded` or `cancelled` solution of the same scenario "
        "(of any earlier version). Its routes are where the search starts: stops the request no longer "
        "has are dropped, new ones are inserted by the solver, and the result is never longer than "
        "those routes when they are still complete and feasible.",
    )
    pins: Pins | None = Field(
        default=None,
        description="What must not move: a stop on a vehicle (`stop`), the visits a route begins with "
        "(`prefix`, in order), or a whole route (`locked`). A vehicle is `vehicle_type` + `vehicle`, "
        "numbered from 0 within its type as in a payload's routes. A stop in two pins, an unknown id "
        "or vehicle, or a pinned route that is infeasible by itself is a 422 pointing at the pin.",
    )


class TicketRead(BaseModel):
    ticket: str
    expires_in: int


class SolutionFields(Body):
    status: RecordedStatus


class SolutionCreate(SolutionFields):
    payload: Document | None = None


class SolutionPatchFields(Patch):
    status: RecordedStatus | None = None


class SolutionUpdate(SolutionPatchFields):
    payload: Document | None = None


class SolutionSummary(Read):
    id: uuid.UUID
    scenario_id: uuid.UUID
    status: Annotated[
        SolutionStatus,
        Field(
            description="`pending` → `running` → `succeeded` | `failed` | `cancelled` for a solve; a recorded "
            "solution has the status it was recorded with."
        ),
    ]
    created_at: Timestamp
    updated_at: Timestamp
    created_by: uuid.UUID = Field(description="The id of the user who created it (the workspace owns it).")


class SolutionHead(SolutionSummary):
    """A solution without its payload: plus a solve's progress and, when it failed, why."""

    progress: Progress | None = Field(
        default=None, description="A solve's latest progress (written at least once a second while it runs)."
    )
    reason: str | None = Field(default=None, description="Why a solve failed, in a short sentence.")
    from_solution: uuid.UUID | None = Field(
        default=None, description="A re-solve's starting plan (the solve's `from_solution`)."
    )
    pins: list[Pin] | None = Field(default=None, description="A re-solve's pins, as they were sent.")


class SolutionRead(SolutionHead):
    payload: Annotated[
        SolutionPayload | JsonObject | None,
        Field(
            description="A solve's result (a SolutionPayload) once it succeeded or was cancelled with a "
            "solution; a recorded solution's payload as it was recorded or last patched (any JSON object); "
            "null when there is none."
        ),
    ]


SolutionPage = Page[SolutionSummary]
