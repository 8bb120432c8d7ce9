"""A PyVRP solution as the solution payload (planning.schemas.SolutionPayload) (without `scenario_version`)."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from pyvrp import Route, Solution

from service.solver.problem import Problem
from service.solver.request import SolveRequest

PYVRP_VERSION = version("pyvrp")


def build_payload(
    request: SolveRequest,
    problem: Problem,
    solution: Solution,
    *,
    iterations: int,
    runtime_s: float,
    seed: int,
    time_limit_s: float,
    vehicles: Sequence[int],
) -> dict[str, Any]:
    """`vehicles`: each route's vehicle, numbered from 0 within its type (pinning.to_base)."""
    routes = [
        _route(request, problem, route, vehicle)
        for route, vehicle in zip(solution.routes(), vehicles, strict=True)
    ]
    served = {stop for route in routes for stop in route["stops"]}
    return {
        "feasible": solution.is_feasible(),
        "distance": sum(route["distance"] for route in routes),
        "duration": sum(route["duration"] for route in routes),
        "routes": routes,
        # Every stop not on a route, in request order: the unservable ones, optional ones not
        # worth their detour and, in an infeasible solution, required ones left out.
        "unassigned": [stop.id for stop in request.stops if stop.id not in served],
        "solver": {
            "name": "pyvrp",
            "version": PYVRP_VERSION,
            "iterations": iterations,
            "runtime_s": round(runtime_s, 3),
            "seed": seed,
            "time_limit_s": time_limit_s,
        },
    }


def _route(request: SolveRequest, problem: Problem, route: Route, vehicle: int) -> dict[str, Any]:
    visits = [activity for activity in route.schedule() if activity.is_client()]
    start, end = route.start_time(), route.end_time()
    return {
        "vehicle_type": request.vehicle_types[route.vehicle_type()].id,
        "vehicle": vehicle,
        "stops": [request.stops[problem.client_stops[visit.idx]].id for visit in visits],
        "distance": route.distance(),
        "duration": end - start,
        "load": route.delivery(),
        "start": start,
        "end": end,
        # When service begins: after any wait for the stop's time window to open.
        "arrivals": [visit.start_time for visit in visits],
    }
