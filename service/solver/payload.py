"""A PyVRP solution as the solution payload (plan.SolutionPayload), without `scenario_version`."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from importlib.metadata import version
from typing import Any

from pyvrp import ActivityType, Route, Solution

from service.solver.problem import Problem
from service.solver.reasons import Reasons, reasons_after
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
        _route(request, problem, route, vehicle=vehicle)
        for route, vehicle in zip(solution.routes(), vehicles, strict=True)
    ]
    return {
        "feasible": solution.is_feasible(),
        "distance": sum(route["distance"] for route in routes),
        "duration": sum(route["duration"] for route in routes),
        "cost": _cost(request, routes),
        "routes": routes,
        **_unassigned(request, problem, solution, routes),
        "solver": {
            "name": "pyvrp",
            "version": PYVRP_VERSION,
            "iterations": iterations,
            "runtime_s": round(runtime_s, 3),
            "seed": seed,
            "time_limit_s": time_limit_s,
        },
    }


def _route(request: SolveRequest, problem: Problem, route: Route, *, vehicle: int) -> dict[str, Any]:
    schedule = route.schedule()
    visits = [_visit(request, problem, activity) for activity in schedule[1:-1]]
    stops = [visit for visit in visits if visit["kind"] == "stop"]
    start, end = route.start_time(), route.end_time()
    plan: dict[str, Any] = {
        "vehicle_type": request.vehicle_types[route.vehicle_type()].id,
        "vehicle": vehicle,
        "stops": [visit["id"] for visit in stops],
        "visits": visits,
        "distance": route.distance(),
        "duration": end - start,
        "load": route.delivery(),
        "start": start,
        "end": end,
        # When service begins: after any wait for the stop's time window to open.
        "arrivals": [visit["arrival"] for visit in stops],
    }
    if route.num_trips() > 1:
        plan["trips"] = route.num_trips()
    return plan


def _visit(request: SolveRequest, problem: Problem, activity: Any) -> dict[str, Any]:
    kind = activity.type
    if kind == ActivityType.CLIENT:
        item, label = request.stops[problem.client_stops[activity.idx]].id, "stop"
    elif kind == ActivityType.DEPOT:  # between the route's two ends: a reload
        item, label = request.depots[activity.idx].id, "reload"
    else:
        shipment = request.shipments[problem.shipment_items[activity.idx]]
        item, label = shipment.id, ("pickup" if kind == ActivityType.PICKUP else "delivery")
    return {"id": item, "kind": label, "arrival": activity.start_time}


def _cost(request: SolveRequest, routes: list[dict[str, Any]]) -> int:
    """Exact in fractions, rounded once: cost_per_km is per 1,000 m, cost_per_hour per 3,600 s."""
    vehicles = {vehicle.id: vehicle for vehicle in request.vehicle_types}
    total = Fraction(0)
    for route in routes:
        vehicle = vehicles[route["vehicle_type"]]
        total += vehicle.fixed_cost
        total += Fraction(vehicle.cost_per_km * route["distance"], 1000)
        total += Fraction(vehicle.cost_per_hour * route["duration"], 3600)
    return round(total)


def _unassigned(
    request: SolveRequest, problem: Problem, solution: Solution, routes: list[dict[str, Any]]
) -> dict[str, Any]:
    served = {visit["id"] for route in routes for visit in route["visits"]}
    in_problem = [request.stops[i].id for i in problem.client_stops]
    in_problem += [request.shipments[i].id for i in problem.shipment_items]
    left_out = [item for item in in_problem if item not in served]
    reasons: Reasons = dict(problem.left_out)
    if left_out:
        reasons |= reasons_after(request, problem.data, problem.scale, left_out, _paths(problem, solution))
    required = {stop.id for stop in request.stops if stop.required}
    required.update(shipment.id for shipment in request.shipments)
    ids = [stop.id for stop in request.stops] + [shipment.id for shipment in request.shipments]
    unassigned = [{"id": item, "reasons": reasons[item]} for item in ids if item in reasons]
    return {
        "unassigned": unassigned,
        "unassigned_required": sum(1 for entry in unassigned if entry["id"] in required),
    }


def _paths(problem: Problem, solution: Solution) -> list[tuple[int, list[int]]]:
    """Per route: its vehicle type and the places it visits, depots at both ends included."""
    data = problem.data
    paths = []
    for route in solution.routes():
        places = []
        for activity in route.schedule():
            if activity.type == ActivityType.DEPOT:
                places.append(data.depot(activity.idx).location)
            elif activity.type == ActivityType.CLIENT:
                places.append(data.client(activity.idx).location)
            elif activity.type == ActivityType.PICKUP:
                places.append(data.shipment(activity.idx).pickup.location)
            else:
                places.append(data.shipment(activity.idx).delivery.location)
        paths.append((route.vehicle_type(), places))
    return paths
