"""Why a stop or shipment is on no route: cheap checks before the solve and after it.

Before: per vehicle type, could it serve the stop (or shipment) on a route of its own? Four checks,
each vectorised over the stops: the demand fits the capacity; the time windows meet the shift; the
places are reachable within their time windows from the depot, leaving as early as shift and depot
allow (waiting is free, so earlier is never worse) and back within the shift; and the route's
distance and its least duration (driving and service, no waiting) are within the type's limits.
What no vehicle type can serve is left out of the problem, so the rest stays feasible; its reasons
are the checks that fail for every vehicle type or, when no single check does (one type too small,
another too late), the checks that fail for some type.

After: a stop the solver left out although it was in the problem is `not_worth_serving` when it is
optional and its prize is below its cheapest insertion into the plan (an existing route, or a
vehicle still unused); otherwise the fleet had no room for it: `no_capacity_left`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
from numpy.typing import NDArray

from service.solver.plan import ReasonCode
from service.solver.request import IntMatrix, SolveRequest

if TYPE_CHECKING:
    from pyvrp import ProblemData

# Far beyond any sum of bounded request values, far below int64's limit: "no limit" here, where
# sums must not overflow.
_UNBOUNDED = 2**62

Reasons = dict[str, list[ReasonCode]]
_CHECKS: tuple[ReasonCode, ...] = (
    "demand_exceeds_capacity",
    "outside_every_shift",
    "time_window_unreachable",
    "route_limit",
)


@dataclass(frozen=True, slots=True)
class _Leg:
    """One visit of every task (stop, or a shipment's pickup or delivery), as arrays over the tasks."""

    place: NDArray[np.int64]
    early: NDArray[np.int64]
    late: NDArray[np.int64]
    service: NDArray[np.int64]


def reasons_before(request: SolveRequest, distances: IntMatrix, durations: IntMatrix) -> Reasons:
    """The stops and shipments no vehicle type could serve on a route of its own, with why."""
    first_stop = len(request.depots)
    stops = request.stops
    stop_legs = [
        _leg(
            np.arange(first_stop, first_stop + len(stops), dtype=np.int64),
            [stop.time_window for stop in stops],
            [stop.service_duration for stop in stops],
        )
    ]
    reasons = _unservable(
        request, [stop.id for stop in stops], [stop.demand for stop in stops], stop_legs, distances, durations
    )
    if request.shipments:
        shipments = request.shipments
        pickups = np.arange(len(shipments), dtype=np.int64) * 2 + first_stop + len(stops)
        legs = [
            _leg(
                pickups,
                [s.pickup.time_window for s in shipments],
                [s.pickup.service_duration for s in shipments],
            ),
            _leg(
                pickups + 1,
                [s.delivery.time_window for s in shipments],
                [s.delivery.service_duration for s in shipments],
            ),
        ]
        ids = [shipment.id for shipment in shipments]
        reasons |= _unservable(request, ids, [s.amount for s in shipments], legs, distances, durations)
    return reasons


def _leg(
    places: NDArray[np.int64], windows: Sequence[tuple[int, int] | None], service: Sequence[int]
) -> _Leg:
    pairs = np.array([window or (0, _UNBOUNDED) for window in windows], dtype=np.int64).reshape(-1, 2)
    return _Leg(places, pairs[:, 0], pairs[:, 1], np.array(service, dtype=np.int64))


def _unservable(
    request: SolveRequest,
    ids: list[str],
    loads: list[list[int]],
    legs: list[_Leg],
    distances: IntMatrix,
    durations: IntMatrix,
) -> Reasons:
    demand = np.array(loads, dtype=np.int64).reshape(len(ids), -1)
    depots = {depot.id: (i, depot.time_window or (0, _UNBOUNDED)) for i, depot in enumerate(request.depots)}
    # fails[k, c, i]: vehicle type k cannot serve task i because of check c.
    fails = np.zeros((len(request.vehicle_types), len(_CHECKS), len(ids)), dtype=np.bool_)
    for k, vehicle in enumerate(request.vehicle_types):
        start, (start_open, start_close) = depots[vehicle.depot]
        end, (end_open, end_close) = depots[vehicle.end_depot or vehicle.depot]
        shift_start, shift_end = vehicle.shift or (0, _UNBOUNDED)
        fails[k, 0] = (demand > np.array(vehicle.capacity, dtype=np.int64)).any(axis=1)
        leave = max(shift_start, start_open)
        if leave > min(shift_end, start_close):  # the vehicle can never leave its depot
            fails[k, 1] = True
            continue
        for leg in legs:
            fails[k, 1] |= (leg.late < shift_start) | (leg.early > shift_end)
        ready = np.full(len(ids), leave, dtype=np.int64)
        distance = np.zeros(len(ids), dtype=np.int64)
        least_duration = np.zeros(len(ids), dtype=np.int64)
        late = np.zeros(len(ids), dtype=np.bool_)
        here: NDArray[np.int64] | int = start
        for leg in legs:
            begin = np.maximum(ready + durations[here, leg.place], leg.early)
            late |= begin > leg.late
            distance += distances[here, leg.place]
            least_duration += durations[here, leg.place] + leg.service
            ready, here = begin + leg.service, leg.place
        back = np.maximum(ready + durations[here, end], end_open)
        late |= back > min(shift_end, end_close)
        fails[k, 2] = late & ~fails[k, 1]
        distance += distances[here, end]
        least_duration += durations[here, end]
        fails[k, 3] = (
            distance > (vehicle.max_distance if vehicle.max_distance is not None else _UNBOUNDED)
        ) | (least_duration > (vehicle.max_duration if vehicle.max_duration is not None else _UNBOUNDED))
    unservable = np.flatnonzero(fails.any(axis=1).all(axis=0)).tolist()
    # Per unservable task, per check: fails for every vehicle type; for some.
    chosen = fails[:, :, unservable]
    always = cast(list[list[bool]], np.logical_and.reduce(chosen, axis=0).T.tolist())
    sometimes = cast(list[list[bool]], np.logical_or.reduce(chosen, axis=0).T.tolist())
    reasons: Reasons = {}
    for i, every, some in zip(unservable, always, sometimes, strict=True):
        codes = every if any(every) else some
        reasons[ids[i]] = [code for code, failed in zip(_CHECKS, codes, strict=True) if failed]
    return reasons


def reasons_after(
    request: SolveRequest,
    data: ProblemData,
    scale: int,
    left_out: Sequence[str],
    routes: Sequence[tuple[int, list[int]]],
) -> Reasons:
    """Why each of `left_out` (ids in the problem, on no route) was left out by the solver.

    `routes`: per route, its vehicle type's index and the places it visits in order, depots
    included at both ends. `scale` turns a prize into the solver's objective units.
    """
    if not left_out:
        return {}
    optional = {
        stop.id: (len(request.depots) + i, stop) for i, stop in enumerate(request.stops) if not stop.required
    }
    candidates = [item for item in left_out if item in optional]
    reasons: Reasons = {item: ["no_capacity_left"] for item in left_out}
    if not candidates:
        return reasons
    places = np.array([optional[item][0] for item in candidates], dtype=np.int64)
    service = np.array([optional[item][1].service_duration for item in candidates], dtype=np.int64)
    prizes = np.array([optional[item][1].prize * scale for item in candidates], dtype=np.int64)
    # PyVRP hands back its own int64 matrices (no copy).
    distances: IntMatrix = np.asarray(data.distance_matrix(0), dtype=np.int64)
    durations: IntMatrix = np.asarray(data.duration_matrix(0), dtype=np.int64)
    kinds = [data.vehicle_type(k) for k in range(data.num_vehicle_types)]
    # Every edge of every route at once: inserting a stop into edge (a, b) adds a -> stop -> b and
    # removes a -> b, at that route's vehicle type's costs. The routes' places are laid end to end,
    # so that the travel to and from each candidate is gathered once per place, not per edge.
    path = np.array([place for _, places_ in routes for place in places_], dtype=np.int64)
    # Column i is the pair path[i] -> path[i + 1]; the pairs joining two routes are no edges.
    joins = np.cumsum([len(places_) for _, places_ in routes])[:-1] - 1
    per_metre = np.array(
        [kinds[k].unit_distance_cost for k, places_ in routes for _ in places_], dtype=np.int64
    )
    per_second = np.array(
        [kinds[k].unit_duration_cost for k, places_ in routes for _ in places_], dtype=np.int64
    )
    cheapest = np.full(len(candidates), np.inf)
    if len(path) > 1:
        detour = per_metre[:-1] * _extra(distances, places, path)
        if per_second.any():  # the distance objective has no duration costs: skip the gathers
            detour += per_second[:-1] * (_extra(durations, places, path) + service[:, None])
        detour[:, joins] = np.iinfo(np.int64).max
        cheapest = detour.min(axis=1).astype(np.float64)
    used = np.bincount(np.array([k for k, _ in routes], dtype=np.int64), minlength=len(kinds))
    for k, kind in enumerate(kinds):
        if used[k] >= kind.num_available:
            continue
        start, end = kind.start_depot, kind.end_depot
        alone = kind.fixed_cost + kind.unit_distance_cost * (
            distances[start, places] + distances[places, end]
        )
        alone += kind.unit_duration_cost * (durations[start, places] + service + durations[places, end])
        cheapest = np.minimum(cheapest, alone)
    for item, worth_less in zip(candidates, (prizes <= cheapest).tolist(), strict=True):
        if worth_less:
            reasons[item] = ["not_worth_serving"]
    return reasons


def _extra(matrix: IntMatrix, places: NDArray[np.int64], path: NDArray[np.int64]) -> IntMatrix:
    """[i, j]: place i inserted between path[j] and path[j + 1] adds this much travel."""
    into = np.ascontiguousarray(matrix[:, places][path].T)
    out_of = matrix[places][:, path]
    extra: IntMatrix = into[:, :-1] + out_of[:, 1:] - matrix[path[:-1], path[1:]]
    return extra
