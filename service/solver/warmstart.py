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
from pyvrp import IteratedLocalSearch, PenaltyManager, RandomNumberGenerator, Route, Solution
from pyvrp.search import LocalSearch, PerturbationManager, compute_neighbours
from pyvrp.stop import StoppingCriterion

from service.solver.pinning import PinnedProblem
from service.solver.request import SolveRequest


def seed_solution(
    pinned: PinnedProblem, request: SolveRequest, routes: Sequence[Any]
) -> tuple[Solution, dict[int, tuple[int, int]]]:
    """The routes of an earlier payload (`vehicle_type`, `vehicle`, `stops`) as a solution of the
    pinned problem, and each client's vehicle in them (request vehicle type, vehicle). A recorded
    solution's payload may be any JSON: what is not a route is skipped."""
    types = {vehicle.id: i for i, vehicle in enumerate(request.vehicle_types)}
    stop_index = {stop.id: i for i, stop in enumerate(request.stops)}
    client_of = {stop: c for c, stop in enumerate(pinned.base.client_stops)}
    ghosts = {c for kind in pinned.types for c in kind.prefix} | {
        c for _, _, route in pinned.locked for c in route
    }
    numbered: Counter[str] = Counter()
    seeded: set[int] = set()  # pinned-problem vehicle types given a route
    visits_of: list[tuple[int, list[int]]] = []
    seen: set[int] = set()
    earlier: dict[int, tuple[int, int]] = {}
    capacity = Counter({i: vt.num_available for i, vt in enumerate(pinned.data.vehicle_types())})
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
        visits = []
        stops = route.get("stops")
        for stop in stops if isinstance(stops, list) else []:
            c = client_of.get(stop_index.get(stop, -1)) if isinstance(stop, str) else None
            if c is None or c in seen or c in ghosts:
                continue
            owner = pinned.pinned.get(c)
            if owner is not None and owner != (types[type_id], vehicle):
                continue
            seen.add(c)
            visits.append(c)
            earlier[c] = (types[type_id], vehicle)
        anchor = pinned.types[kind].anchor
        if anchor is not None:
            visits.insert(0, anchor)
        if visits:
            capacity[kind] -= 1
            seeded.add(kind)
            visits_of.append((kind, visits))
    for kind, pinned_type in enumerate(pinned.types):
        if pinned_type.anchor is not None and kind not in seeded:
            visits_of.append((kind, [pinned_type.anchor]))
    data = pinned.data
    return Solution(data, [Route(data, visits, kind) for kind, visits in visits_of]), earlier


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
