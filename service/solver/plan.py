"""The solution payload's shape: what a solve writes (`payload.build_payload`) and the API documents.

Plain pydantic models with no PyVRP in sight, so the web process can describe a payload without
importing the solver.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RoutePlan(BaseModel):
    """One vehicle's route. Times are seconds from the start of the planning day."""

    vehicle_type: str = Field(description="The vehicle type's id in the request.")
    vehicle: int = Field(
        default=0, description="Which vehicle of its type, numbered from 0 (what a pin names)."
    )
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
    initial_distance: int | None = Field(
        default=None,
        description="Metres of the solution the search started from (a re-solve's earlier routes, or "
        "the solver's own start) when it was feasible: the result is never longer.",
    )


_PAYLOAD_EXAMPLE: dict[str, Any] = {
    "feasible": True,
    "distance": 18342,
    "duration": 9120,
    "routes": [
        {
            "vehicle_type": "van",
            "vehicle": 0,
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
    pin_conflicts: list[str] = Field(
        default_factory=list,
        description="A re-solve's pinned stops that are not on their pinned vehicle's route (left out, or "
        "elsewhere in an infeasible solution), in request order: empty when every pin holds.",
    )
    solver: SolverStats
    scenario_version: str = Field(
        description="The scenario's ETag value when the solve was queued: later edits do not change it."
    )
