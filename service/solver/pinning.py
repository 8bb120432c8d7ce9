"""Pins built into PyVRP's model, which has none of its own.

The pinned problem is the request's problem with these changes, each exact rather than a penalty
that a search could trade away:

- **A pinned vehicle becomes a vehicle type of its own** (count 1, its type's attributes), and its
  type keeps the other vehicles. Each pinned vehicle gets one extra load dimension: the stops
  pinned to it (and only they) carry 1 in it, it has room for all of them, and every other vehicle
  has room for none. A solution with a pinned stop on another vehicle therefore exceeds a capacity:
  PyVRP's final best is feasible only if every pin holds. One dimension per pinned vehicle costs far
  less than a routing profile per pinned vehicle would (a full matrix each: 64 MB at 2,000 stops).
- **A locked route is taken out of the problem**: its vehicle is not offered to the solver, and its
  stops become ghosts (kept at their indices, optional with no prize, and carrying 1 in a dimension
  no vehicle has room for — never served). The route is put back verbatim afterwards.
- **A prefix is driven before the solve**: its stops are ghosts too, and its vehicle starts at a new
  depot at the prefix's last stop, when the prefix is done (driven as early as shift and depot
  allow: waiting being free, that is never worse), with the prefix's load subtracted from its
  capacity (for a vehicle that reloads: on board until its first reload) and the prefix's distance
  and time from its route limits; its costs, reload depots and reload limit stay its type's. So the solver cannot touch
  the prefix. An *anchor* — a required client pinned to that vehicle, at that same place with a
  zero-width time window at that moment — keeps the vehicle in use even when nothing follows the
  prefix, so the route home from the prefix is always paid for: the objective differs from the
  real one by a constant (the prefixes' and locked routes' own distances), never by a choice.
  Only a trip of zero duration could put the anchor later than first, and it then changes nothing.

`to_base` puts a pinned solution back into the request's own problem: each route with its prefix
in front, the locked routes, and no anchors. PyVRP then evaluates the whole routes again, so the
payload's distances, times, loads and feasibility are those of the real routes.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import numpy as np
from pyvrp import Activity, ActivityType, Client, Depot, ProblemData, Route, Shipment, Solution, VehicleType

from service.solver.pins import Pin, drive
from service.solver.problem import Problem
from service.solver.request import IntMatrix, SolveRequest

_PYVRP_UNBOUNDED = int(np.iinfo(np.int64).max)


@dataclass(frozen=True, slots=True)
class PinnedType:
    """A vehicle type of the pinned problem: the request's type, and the one vehicle it stands for
    (None: the type's unpinned vehicles)."""

    base: int
    vehicle: int | None
    prefix: list[int] = field(default_factory=list)  # client indices driven before the solve
    anchor: int | None = None  # the anchor's client index


@dataclass(frozen=True, slots=True)
class PinnedProblem:
    base: Problem
    data: ProblemData
    types: list[PinnedType]
    # The request's vehicle type -> its unpinned vehicles' numbers, in order.
    free: dict[int, list[int]]
    # (request's vehicle type, vehicle, client indices) of each locked route.
    locked: list[tuple[int, int, list[int]]]
    # Client index -> (request's vehicle type, vehicle) it is pinned to (stop, prefix and locked pins).
    pinned: dict[int, tuple[int, int]]
    anchors: frozenset[int]
    # Metres the pinned problem's objective leaves out: the prefixes' and locked routes' own.
    offset: int

    def pinned_type(self, base: int, vehicle: int) -> int | None:
        """The pinned problem's vehicle type that vehicle `vehicle` of request type `base` belongs
        to; None for a locked route's vehicle (or one the request no longer has)."""
        own = [i for i, kind in enumerate(self.types) if kind.base == base and kind.vehicle == vehicle]
        if own:
            return own[0]
        if vehicle in self.free.get(base, []):
            return next(i for i, kind in enumerate(self.types) if kind.base == base and kind.vehicle is None)
        return None


def unpinned(problem: Problem, request: SolveRequest) -> PinnedProblem:
    """The problem as it is: no pins."""
    types = [PinnedType(base=i, vehicle=None) for i in range(len(request.vehicle_types))]
    free = {i: list(range(vehicle.count)) for i, vehicle in enumerate(request.vehicle_types)}
    return PinnedProblem(problem, problem.data, types, free, [], {}, frozenset(), 0)


def pinned_left_out(problem: Problem, request: SolveRequest, pins: list[Pin]) -> list[str]:
    """The pinned stops that the checks before the solve leave out (no vehicle type could serve
    them on a route of their own), in request order. Pins are checked against the route limits and
    the pinned vehicle when queued; this catches what only the whole fleet's checks see."""
    named = {stop for pin in pins for stop in (pin.route or [pin.stop or ""])}
    return [stop.id for stop in request.stops if stop.id in named and stop.id in problem.left_out]


def pin_problem(
    problem: Problem, request: SolveRequest, pins: list[Pin], distances: IntMatrix, durations: IntMatrix
) -> PinnedProblem:
    """`problem` with `pins` built in (see the module's docstring). Pins were checked against the
    request when the solve was queued; one that no longer fits is a ValueError."""
    if not pins:
        return unpinned(problem, request)
    data = problem.data
    type_index = {vehicle.id: i for i, vehicle in enumerate(request.vehicle_types)}
    client_of = {problem.client_stops[c]: c for c in range(len(problem.client_stops))}
    stop_index = {stop.id: i for i, stop in enumerate(request.stops)}

    def client(stop_id: str) -> int | None:
        # None: left out before the solve (pinned_left_out), so its pin is dropped.
        return client_of.get(stop_index[stop_id])

    # Each pinned vehicle, in the order of first mention: its stops and its route pin.
    vehicles: dict[tuple[int, int], list[int]] = {}
    prefixes: dict[tuple[int, int], list[int]] = {}
    locked: list[tuple[int, int, list[int]]] = []
    pinned: dict[int, tuple[int, int]] = {}
    for pin in pins:
        key = (type_index[pin.vehicle_type], pin.vehicle)
        route = [c for c in map(client, pin.route or [pin.stop or ""]) if c is not None]
        if not route:
            continue
        if pin.locked is not None:
            locked.append((*key, route))
            pinned.update(dict.fromkeys(route, key))
            continue
        stops = vehicles.setdefault(key, [])
        if pin.stop is not None:
            stops.append(route[0])
            pinned[route[0]] = key
        elif pin.prefix is not None:
            prefixes[key] = route
            pinned.update(dict.fromkeys(route, key))
    locked_keys = {(t, v) for t, v, _ in locked}
    vehicles = {key: stops for key, stops in vehicles.items() if key not in locked_keys}
    ghosts = {c for prefix in prefixes.values() for c in prefix} | {
        c for _, _, route in locked for c in route
    }
    dimensions = len(request.vehicle_types[0].capacity)
    own = {key: dimensions + k for k, key in enumerate(vehicles)}
    ghost_dimension = dimensions + len(vehicles)
    width = ghost_dimension + (1 if ghosts else 0)

    def widened(load: list[int], ones: tuple[int, ...] = ()) -> list[int]:
        extra = [0] * (width - len(load))
        for dimension in ones:
            extra[dimension - len(load)] = 1
        return [*load, *extra]

    base_clients = data.clients()
    clients: list[Client] = []
    for c, base_client in enumerate(base_clients):
        ones = (ghost_dimension,) if c in ghosts else (own[pinned[c]],) if c in pinned else ()
        clients.append(
            _client(
                base_client,
                widened(list(base_client.delivery), ones),
                widened(list(base_client.pickup)),
                ghost=c in ghosts,
            )
        )
    depots = list(data.depots())
    types: list[PinnedType] = []
    vehicle_types: list[VehicleType] = []
    free: dict[int, list[int]] = {}
    offset = 0
    for t, _, route in locked:
        offset += int(Route(data, route, t).distance())
    for t, base_type in enumerate(data.vehicle_types()):
        count = request.vehicle_types[t].count
        free[t] = [v for v in range(count) if (t, v) not in vehicles and (t, v) not in locked_keys]
        if free[t]:
            types.append(PinnedType(base=t, vehicle=None))
            vehicle_types.append(
                base_type.replace(
                    num_available=min(len(free[t]), base_type.num_available),
                    capacity=widened(list(base_type.capacity)),
                    initial_load=widened(list(base_type.initial_load)) if base_type.initial_load else None,
                )
            )
        for key, stops in vehicles.items():
            if key[0] != t:
                continue
            capacity = widened(list(base_type.capacity))
            capacity[own[key]] = len(stops) + (1 if key in prefixes else 0)
            vehicle = base_type.replace(
                num_available=1,
                capacity=capacity,
                initial_load=widened(list(base_type.initial_load)) if base_type.initial_load else None,
                name=base_type.name,
            )
            if key not in prefixes:
                types.append(PinnedType(base=t, vehicle=key[1]))
                vehicle_types.append(vehicle)
                continue
            prefix = prefixes[key]
            stop_path = [problem.client_stops[c] for c in prefix]
            driven = drive(request, distances, durations, t, stop_path)
            if driven.broken is not None:
                raise ValueError("a pinned prefix is not feasible by itself")
            start = data.depots()[base_type.start_depot].location
            places = [start, *(base_clients[c].location for c in prefix)]
            prefix_distance = int(sum(distances[a, b] for a, b in itertools.pairwise(places)))
            offset += prefix_distance
            load = [sum(base_clients[c].delivery[d] for c in prefix) for d in range(dimensions)]
            last = base_clients[prefix[-1]].location
            depots.append(Depot(location=last, tw_early=driven.ready, name=f"{base_type.name} after prefix"))
            anchor = len(clients)
            clients.append(
                Client(
                    location=last,
                    delivery=widened([0] * dimensions, (own[key],)),
                    pickup=widened([0] * dimensions),
                    tw_early=driven.ready,
                    tw_late=driven.ready,
                    required=True,
                    name=f"{base_type.name} prefix end",
                )
            )
            initial_load = widened(list(base_type.initial_load) or [0] * dimensions)
            if base_type.reload_depots:
                # The prefix's load fills the rest of the first trip only: PyVRP's initial load is
                # on board until the first reload, which then empties the vehicle as usual.
                initial_load[:dimensions] = [
                    a + b for a, b in zip(initial_load[:dimensions], load, strict=True)
                ]
            else:
                capacity[:dimensions] = [c - used for c, used in zip(base_type.capacity, load, strict=True)]
            types.append(PinnedType(base=t, vehicle=key[1], prefix=prefix, anchor=anchor))
            vehicle_types.append(
                vehicle.replace(
                    capacity=capacity,
                    initial_load=initial_load,
                    start_depot=len(depots) - 1,
                    tw_early=max(base_type.tw_early, driven.ready),
                    start_late=max(base_type.start_late, driven.ready),
                    max_distance=_less(base_type.max_distance, prefix_distance),
                    shift_duration=_less(base_type.shift_duration, driven.ready - driven.depart),
                )
            )
    shipments = [_shipment(s, widened(list(s.amount))) for s in data.shipments()]
    pinned_data = data.replace(
        clients=clients, depots=depots, vehicle_types=vehicle_types, shipments=shipments
    )
    anchors = frozenset(kind.anchor for kind in types if kind.anchor is not None)
    return PinnedProblem(problem, pinned_data, types, free, locked, pinned, anchors, offset)


def _less(limit: int, used: int) -> int:
    return limit if limit >= _PYVRP_UNBOUNDED else max(0, limit - used)


def _client(base: Client, delivery: list[int], pickup: list[int], *, ghost: bool) -> Client:
    return Client(
        location=base.location,
        delivery=delivery,
        pickup=pickup,
        service_duration=base.service_duration,
        tw_early=base.tw_early,
        tw_late=base.tw_late,
        release_time=base.release_time,
        prize=0 if ghost else base.prize,
        required=False if ghost else base.required,
        group=base.group,
        name=base.name,
    )


def _shipment(base: Shipment, amount: list[int]) -> Shipment:
    return Shipment(
        pickup_location=base.pickup.location,
        delivery_location=base.delivery.location,
        pickup_tw_early=base.pickup.tw_early,
        pickup_tw_late=base.pickup.tw_late,
        pickup_service_duration=base.pickup.service_duration,
        delivery_tw_early=base.delivery.tw_early,
        delivery_tw_late=base.delivery.tw_late,
        delivery_service_duration=base.delivery.service_duration,
        amount=amount,
        prize=base.prize,
        required=base.required,
        name=base.name,
    )


def to_base(
    pinned: PinnedProblem, solution: Solution, earlier: Mapping[int, tuple[int, int]] | None = None
) -> tuple[Solution, list[int]]:
    """`solution` of the pinned problem as a solution of the request's problem, and each of its
    routes' vehicle number within its type. `earlier`: client -> (vehicle type, vehicle) in the plan
    a warm start began from, so that a route keeps its vehicle's number across re-solves."""
    base = pinned.base.data
    earlier = earlier or {}
    if pinned.data is base:
        found = [(route.vehicle_type(), _clients(route)) for route in solution.routes()]
        return solution, _numbers(found, pinned.free, earlier)
    routes: list[tuple[int, int | None, list[Activity]]] = []
    served_prefix: set[int] = set()
    for route in solution.routes():
        kind = pinned.types[route.vehicle_type()]
        schedule = list(route.schedule())[1:-1]
        visits = [
            Activity(a.type, a.idx) for a in schedule if not (a.is_client() and a.idx in pinned.anchors)
        ]
        prefix = [Activity(ActivityType.CLIENT, c) for c in kind.prefix]
        served_prefix.add(route.vehicle_type())
        routes.append((kind.base, kind.vehicle, prefix + visits))
    unpinned = [(t, {a.idx for a in visits if a.is_client()}) for t, v, visits in routes if v is None]
    numbers = iter(_numbers(unpinned, pinned.free, earlier))
    numbered = [(t, next(numbers) if v is None else v, visits) for t, v, visits in routes]
    for index, kind in enumerate(pinned.types):
        if kind.prefix and index not in served_prefix:
            # The solver left the anchor out (an infeasible solution): the prefix is still driven.
            assert kind.vehicle is not None  # a prefix belongs to one vehicle
            numbered.append(
                (kind.base, kind.vehicle, [Activity(ActivityType.CLIENT, c) for c in kind.prefix])
            )
    for t, vehicle, clients in pinned.locked:
        numbered.append((t, vehicle, [Activity(ActivityType.CLIENT, c) for c in clients]))
    numbered.sort(key=lambda item: (item[0], item[1]))
    rebuilt = Solution(base, [Route(base, activities, t) for t, _, activities in numbered])
    return rebuilt, [vehicle for _, vehicle, _ in numbered]


def _clients(route: Route) -> set[int]:
    return {activity.idx for activity in route.schedule() if activity.is_client()}


def _numbers(
    routes: list[tuple[int, set[int]]], free: Mapping[int, list[int]], earlier: Mapping[int, tuple[int, int]]
) -> list[int]:
    """Numbers for routes of unpinned vehicles (request vehicle type, clients): a route takes the
    number of the earlier vehicle it shares most stops with (most shared first), the rest the lowest
    numbers left, so a re-solve renumbers no route it barely changed."""
    offered = {t: set(vehicles) for t, vehicles in free.items()}
    candidates = sorted(
        (-shared, i, vehicle)
        for i, (t, clients) in enumerate(routes)
        for (was_type, vehicle), shared in Counter(earlier[c] for c in clients if c in earlier).items()
        if was_type == t and vehicle in offered[t]
    )
    numbers: list[int | None] = [None] * len(routes)
    used: dict[int, set[int]] = {t: set() for t in free}
    for _, i, vehicle in candidates:
        t = routes[i][0]
        if numbers[i] is None and vehicle not in used[t]:
            numbers[i] = vehicle
            used[t].add(vehicle)
    result = []
    for i, (t, _) in enumerate(routes):
        number = numbers[i]
        if number is None:
            number = next(v for v in free[t] if v not in used[t])
            used[t].add(number)
        result.append(number)
    return result


def broken_pins(
    pinned: PinnedProblem,
    request: SolveRequest,
    payload_routes: list[dict[str, object]],
    *,
    also: Collection[str] = (),
) -> list[str]:
    """Ids of the pinned stops not on their vehicle's route (elsewhere, or left out while required),
    and the stops of `also` (pinned stops left out before the solve), in request order. An optional
    stop pinned to a vehicle may be left out: served, it is there."""
    order = {stop.id: i for i, stop in enumerate(request.stops)}
    extra = [(order[stop_id], stop_id) for stop_id in also]
    if not pinned.pinned:
        return [stop_id for _, stop_id in sorted(extra)]
    where = {
        stop: (route["vehicle_type"], route["vehicle"])
        for route in payload_routes
        for stop in route["stops"]  # type: ignore[attr-defined]
    }
    broken = []
    for c, (t, vehicle) in pinned.pinned.items():
        stop = request.stops[pinned.base.client_stops[c]]
        found = where.get(stop.id)
        if (found is None and stop.required) or (
            found is not None and found != (request.vehicle_types[t].id, vehicle)
        ):
            broken.append((pinned.base.client_stops[c], stop.id))
    return [stop_id for _, stop_id in sorted(broken + extra)]
