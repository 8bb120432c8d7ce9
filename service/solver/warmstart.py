"""A warm start: an earlier solution's routes as the solver's initial solution.

PyVRP's `solve(initial_solution=...)` starts its search from the given solution, which is then its
first best: a feasible seed can only be improved on, so a warm start never ends worse than the
solution it starts from. The earlier routes are read by stop id and vehicle: stops the request no
longer has (or can no longer serve) are dropped, a pinned stop is kept only on its own vehicle,
routes of vehicles the request no longer has are dropped, and a prefix vehicle's route starts with
its anchor (see pinning.py).

The seed may then miss required stops (new ones, or ones dropped from it). PyVRP takes an incomplete
initial solution, but its late-acceptance criterion compares penalised costs, which do not count a
missing client: the incomplete seed looks cheaper than every complete solution, so the search keeps
returning to it and stalls at its first complete solution (measured on 1,000 stops with 20 new
ones: no improvement in 4 s). So an incomplete seed is first completed the way PyVRP completes its
own random start — one exhaustive local search, which inserts the missing clients — and the search
starts from that; `solve_from` is `pyvrp.solve` with only that start changed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pyvrp
from pyvrp import (
    Activity,
    ActivityType,
    IteratedLocalSearch,
    PenaltyManager,
    RandomNumberGenerator,
    Route,
    Solution,
)
from pyvrp.search import LocalSearch, PerturbationManager, compute_neighbours
from pyvrp.stop import StoppingCriterion

from service.solver.pinning import PinnedProblem
from service.solver.request import SolveRequest


def seed_solution(
    pinned: PinnedProblem, request: SolveRequest, routes: Sequence[Any]
) -> tuple[Solution, dict[int, tuple[int, int]]]:
    """The routes of an earlier payload (`vehicle_type`, `vehicle`, and `visits` or else `stops`)
    as a solution of the pinned problem, and each client's vehicle in them (request vehicle type,
    vehicle). From `visits`, shipments picked up and delivered on one route and reloads at a depot
    the vehicle may reload at are seeded too. A recorded solution's payload may be any JSON: what is
    not a route is skipped."""
    types = {vehicle.id: i for i, vehicle in enumerate(request.vehicle_types)}
    stop_index = {stop.id: i for i, stop in enumerate(request.stops)}
    client_of = {stop: c for c, stop in enumerate(pinned.base.client_stops)}
    ghosts = {c for kind in pinned.types for c in kind.prefix} | {
        c for _, _, route in pinned.locked for c in route
    }
    numbered: Counter[str] = Counter()
    seeded: set[int] = set()  # pinned-problem vehicle types given a route
    visits_of: list[tuple[int, list[Activity]]] = []
    seen: set[int] = set()
    earlier: dict[int, tuple[int, int]] = {}
    capacity = Counter({i: vt.num_available for i, vt in enumerate(pinned.data.vehicle_types())})
    depot_of = {depot.id: i for i, depot in enumerate(request.depots)}
    shipment_of = {request.shipments[item].id: s for s, item in enumerate(pinned.base.shipment_items)}
    shipments_seen: set[int] = set()
    reloads = [set(vt.reload_depots) for vt in pinned.data.vehicle_types()]
    for route in routes:
        if not isinstance(route, Mapping):
            continue
        type_id = route.get("vehicle_type")
        if not isinstance(type_id, str) or type_id not in types:
            continue
        # Payloads from before routes carried their vehicle: numbered in order within their type.
        number = route.get("vehicle")
        vehicle = number if type(number) is int else numbered[type_id]
        numbered[type_id] += 1
        kind = pinned.pinned_type(types[type_id], vehicle)
        if kind is None or capacity[kind] == 0:
            continue
        visits: list[Activity] = []
        for item, what in _visits(route):
            if what == "reload":
                if depot_of.get(item, -1) in reloads[kind]:
                    visits.append(Activity(ActivityType.DEPOT, depot_of[item]))
                continue
            if what != "stop":
                shipment = shipment_of.get(item)
                if shipment is not None:
                    visits.append(Activity(_SHIPMENT_ENDS[what], shipment))
                continue
            c = client_of.get(stop_index.get(item, -1))
            if c is None or c in seen or c in ghosts:
                continue
            owner = pinned.pinned.get(c)
            if owner is not None and owner != (types[type_id], vehicle):
                continue
            seen.add(c)
            visits.append(Activity(ActivityType.CLIENT, c))
            earlier[c] = (types[type_id], vehicle)
        visits = _whole_shipments(visits, shipments_seen)
        while visits and visits[0].is_depot():
            visits.pop(0)  # a reload first of all would be a trip with nothing in it
        while visits and visits[-1].is_depot():
            visits.pop()
        # Two reloads in a row (what lay between them dropped) are one.
        visits = [v for i, v in enumerate(visits) if not (v.is_depot() and visits[i - 1].is_depot())]
        anchor = pinned.types[kind].anchor
        if anchor is not None:
            visits.insert(0, Activity(ActivityType.CLIENT, anchor))
        if visits:
            capacity[kind] -= 1
            seeded.add(kind)
            visits_of.append((kind, visits))
    for kind, pinned_type in enumerate(pinned.types):
        if pinned_type.anchor is not None and kind not in seeded:
            visits_of.append((kind, [Activity(ActivityType.CLIENT, pinned_type.anchor)]))
    data = pinned.data
    return Solution(data, [Route(data, visits, kind) for kind, visits in visits_of]), earlier


_SHIPMENT_ENDS = {"pickup": ActivityType.PICKUP, "delivery": ActivityType.DELIVERY}


def _visits(route: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A recorded route's visits as (id, kind): its `visits` when it lists them (stops, shipment
    ends, reloads), else its `stops`. Whatever is not a visit is skipped."""
    visits = route.get("visits")
    if isinstance(visits, list):
        found = [(visit.get("id"), visit.get("kind")) for visit in visits if isinstance(visit, Mapping)]
        return [
            (item, kind)
            for item, kind in found
            if isinstance(item, str) and kind in ("stop", "pickup", "delivery", "reload")
        ]
    stops = route.get("stops")
    return [(stop, "stop") for stop in stops if isinstance(stop, str)] if isinstance(stops, list) else []


def _whole_shipments(visits: list[Activity], seen: set[int]) -> list[Activity]:
    """`visits` with only the shipments picked up and then delivered on it, once in the whole seed:
    PyVRP takes no half of a shipment (the solver inserts what is dropped here)."""
    picked: dict[int, int] = {}
    whole: set[int] = set()
    for position, visit in enumerate(visits):
        if visit.type == ActivityType.PICKUP and visit.idx not in picked:
            picked[visit.idx] = position
        elif visit.type == ActivityType.DELIVERY and visit.idx in picked and visit.idx not in seen:
            whole.add(visit.idx)
    seen.update(whole)
    kept: list[Activity] = []
    done: set[tuple[int, ActivityType]] = set()
    for visit in visits:
        if visit.is_client() or visit.is_depot():
            kept.append(visit)
        elif visit.idx in whole and (visit.idx, visit.type) not in done:
            done.add((visit.idx, visit.type))
            kept.append(visit)
    return kept


def solve_from(
    data: pyvrp.ProblemData,
    initial: Solution,
    *,
    stop: StoppingCriterion,
    seed: int,
    params: pyvrp.SolveParams,
) -> pyvrp.Result:
    """`pyvrp.solve(data, stop, seed, collect_stats=False, params=params, initial_solution=...)`,
    with an incomplete `initial` completed first (see the module's docstring)."""
    if initial.is_complete():
        return pyvrp.solve(
            data, stop=stop, seed=seed, collect_stats=False, params=params, initial_solution=initial
        )
    rng = RandomNumberGenerator(seed=seed)
    search = LocalSearch(
        data, rng, compute_neighbours(data, params.neighbourhood), PerturbationManager(params.perturbation)
    )
    for operator in params.operators:
        if operator.supports(data):
            search.add_operator(operator(data))
    penalties = PenaltyManager(params.penalty.midpoint_penalties(data), params.penalty)
    start = search(initial, penalties.max_cost_evaluator(), exhaustive=True)
    return IteratedLocalSearch(data, penalties, search, start, params.ils).run(stop, collect_stats=False)
