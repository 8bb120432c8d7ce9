"""The solution payload's shape: what a solve writes (`payload.build_payload`) and the API documents.

Plain pydantic models with no PyVRP in sight, so the web process can describe a payload without
importing the solver.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

ReasonCode = Literal[
    "demand_exceeds_capacity",
    "time_window_unreachable",
    "outside_every_shift",
    "route_limit",
    "pin_conflict",
    "not_worth_serving",
    "no_capacity_left",
]
REASON_CODES: tuple[ReasonCode, ...] = get_args(ReasonCode)
VisitKind = Literal["stop", "pickup", "delivery", "reload"]


class Visit(BaseModel):
    """One place on a route, in the order driven."""

    id: str = Field(description="The stop's or shipment's id; for a reload, the depot's.")
    kind: VisitKind = Field(
        description="`stop`; `pickup` or `delivery` of a shipment (its id appears twice); `reload` at a depot."
    )
    arrival: int = Field(description="When service begins (after any wait for the time window).")


class RoutePlan(BaseModel):
    """One vehicle's route. Times are seconds from the start of the planning day."""

    vehicle_type: str = Field(description="The vehicle type's id in the request.")
    vehicle: int = Field(
        description="Which vehicle of its type, numbered from 0 (what a pin names; a re-solve keeps the "
        "number of the earlier route a route shares most stops with)."
    )
    stops: list[str] = Field(
        description="The stop ids in the order they are visited (no shipments, no reloads)."
    )
    visits: list[Visit] = Field(
        description="Every visit in order: stops, shipment pickups and deliveries, reloads."
    )
    trips: int | None = Field(
        default=None, description="Trips driven (present when the route reloads at a depot: reloads + 1)."
    )
    distance: int = Field(description="Metres driven, from the depot back to the (end) depot.")
    duration: int = Field(description="Seconds from `start` to `end`: driving, waiting and service.")
    load: list[int] = Field(
        description="What the route delivers to its stops, per load dimension (as `capacity`); over all "
        "trips when it reloads; shipments are not counted."
    )
    start: int = Field(description="When the vehicle leaves its depot.")
    end: int = Field(description="When it is back at its (end) depot.")
    arrivals: list[int] = Field(
        description="When service begins at each stop, in `stops` order (after any wait for its time window)."
    )


class Unassigned(BaseModel):
    """A stop or shipment on no route, and why."""

    id: str = Field(description="The stop's or shipment's id.")
    reasons: list[ReasonCode] = Field(
        description="At least one: `demand_exceeds_capacity` (no vehicle type can carry it), "
        "`time_window_unreachable` (no depot reaches it within its time window and the shift), "
        "`outside_every_shift` (its time window misses the shifts), `route_limit` (max distance or "
        "duration rules out even a route of its own), `pin_conflict` (pins rule it out), "
        "`not_worth_serving` (optional, its prize is below its cheapest detour), `no_capacity_left` "
        "(none of these: the fleet had no room for it)."
    )


class SolverStats(BaseModel):
    """The run that produced the solution."""

    name: str = Field(description="The solver: `pyvrp`.")
    version: str = Field(description="Its version.")
    iterations: int = Field(description="Search iterations done.")
    runtime_s: float = Field(
        description="Seconds the solver worked, set-up and search, on the clock `time_limit_s` bounds."
    )
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
    "cost": 0,
    "routes": [
        {
            "vehicle_type": "van",
            "vehicle": 0,
            "stops": ["s3", "s1"],
            "visits": [
                {"id": "s3", "kind": "stop", "arrival": 26100},
                {"id": "s1", "kind": "stop", "arrival": 27900},
            ],
            "distance": 9000,
            "duration": 4500,
            "load": [7],
            "start": 25200,
            "end": 29700,
            "arrivals": [26100, 27900],
        }
    ],
    "unassigned": [{"id": "s7", "reasons": ["demand_exceeds_capacity"]}],
    "unassigned_required": 1,
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

    feasible: bool = Field(
        description="Whether every constraint of the routes holds (capacities, time windows, shifts, limits). "
        "A stop on no route does not make a plan infeasible: see `unassigned_required`."
    )
    distance: int = Field(description="Metres, all routes together.")
    duration: int = Field(description="Seconds, all routes' durations together.")
    cost: int = Field(
        description="What the routes cost, rounded to the smallest currency unit: per vehicle used its type's "
        "`fixed_cost`, `cost_per_km` per 1,000 m and `cost_per_hour` per 3,600 s (0 without costs)."
    )
    routes: list[RoutePlan] = Field(description="One per vehicle used; unused vehicles have none.")
    unassigned: list[Unassigned] = Field(
        description="The stops and shipments on no route, with why, in request order (stops, then shipments)."
    )
    unassigned_required: int = Field(
        description="How many of `unassigned` are required (every shipment is): a complete plan has 0."
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
