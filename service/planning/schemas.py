"""What the planning API accepts and returns: sessions and scenarios.

`*Create` / `*Update` are the request bodies as documented (unknown fields refused). A body that
carries a document is validated in two parts (see service/core/bodies.py): its small members by
`*Fields`, which do not contain the document, and the document only as "a JSON object" — PostgreSQL
parses and stores it. `*Summary` is a list item, never carrying a document; `*Read` adds the document.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from service.core.pagination import Page
from service.core.schemas import DOCUMENT, Body, JsonObject, Name, Patch, Read
from service.core.timestamps import Timestamp
from service.solver.request import MAX_INT

# A scenario's request: any JSON object is kept; solving needs the named shape.
SOLVABLE = (
    " To be solved (`POST /api/v1/scenarios/{scenario_id}/solve`) it must be a "
    "[SolveRequest](#/components/schemas/SolveRequest): depots, stops, vehicle types, optional "
    "shipments and an optional matrix, in metres and seconds from the start of the planning day."
)
RequestDocument = Annotated[JsonObject, Field(description=DOCUMENT + SOLVABLE)]


class SessionCreate(Body):
    name: Name


class SessionUpdate(Patch):
    name: Name | None = None


class SessionRead(Read):
    id: uuid.UUID
    name: str
    created_at: Timestamp
    updated_at: Timestamp
    created_by: uuid.UUID = Field(description="The id of the user who created it (the workspace owns it).")


class ScenarioFields(Body):
    name: Name


class ScenarioCreate(ScenarioFields):
    request: RequestDocument


class ScenarioPatchFields(Patch):
    name: Name | None = None


class ScenarioUpdate(ScenarioPatchFields):
    request: RequestDocument | None = None


class ScenarioSummary(Read):
    id: uuid.UUID
    session_id: uuid.UUID
    name: str
    created_at: Timestamp
    updated_at: Timestamp
    created_by: uuid.UUID = Field(description="The id of the user who created it (the workspace owns it).")


class ScenarioRead(ScenarioSummary):
    request: Annotated[JsonObject, Field(description="The current request." + SOLVABLE)]


class ImportQuery(BaseModel):
    """The query of `POST …/scenarios/import`: the scenario's name; for a CSV file, its depot and
    fleet; for a VRPLIB file, what overrides the file's own (and its scale)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(
        default=None, description="The scenario's name; default: the file's NAME (VRPLIB), else `Imported`."
    )
    depot_lat: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)] | None = Field(
        default=None, description="CSV (required): the depot's WGS84 latitude."
    )
    depot_lon: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)] | None = Field(
        default=None, description="CSV (required): the depot's WGS84 longitude."
    )
    vehicles: Annotated[int, Field(ge=1, le=MAX_INT)] | None = Field(
        default=None,
        description="CSV (required): vehicles at the depot. VRPLIB: overrides VEHICLES (default: VEHICLES, "
        "else one per stop).",
    )
    capacity: Annotated[int, Field(ge=0, le=MAX_INT)] | None = Field(
        default=None, description="CSV (required): what one vehicle carries. VRPLIB: overrides CAPACITY."
    )
    scale: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=1,
        description="VRPLIB only: multiplies coordinates, times and explicit edge weights before they are "
        "rounded to integers (10 keeps one decimal, as Solomon's instances are measured).",
    )


SessionPage = Page[SessionRead]
ScenarioPage = Page[ScenarioSummary]
