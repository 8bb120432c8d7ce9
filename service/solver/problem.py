"""A request and its matrices as PyVRP `ProblemData`, built directly from the numpy matrices.

`Model.add_edge` would cost one Python call per matrix cell (4 million for 2,000 stops);
`ProblemData` takes the int64 matrices as they are. Matrix rows follow the request (depots, then
stops), so PyVRP location i is request place i; a stop left out of the problem keeps its row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pyvrp import Client, Depot, Location, ProblemData, VehicleType

from service.solver.request import IntMatrix, SolveRequest

# Far beyond any sum of bounded request values, far below int64's limit: "no limit" in the
# feasibility pass below, where sums must not overflow.
_UNBOUNDED = 2**62
_PYVRP_UNBOUNDED = int(np.iinfo(np.int64).max)


@dataclass(frozen=True, slots=True)
class Problem:
    data: ProblemData
    # PyVRP client index -> index into request.stops.
    client_stops: list[int]
    # Stops no vehicle type could serve even on a route of their own, in request order.
    unservable: list[int]


def build_problem(request: SolveRequest, distances: IntMatrix, durations: IntMatrix) -> Problem:
    servable = _servable_alone(request, durations)
    client_stops = [i for i in range(len(request.stops)) if servable[i]]
    unservable = [i for i in range(len(request.stops)) if not servable[i]]
    first_stop = len(request.depots)
    clients = [_client(request, first_stop + i, i) for i in client_stops]
    depot_index = {depot.id: i for i, depot in enumerate(request.depots)}
    vehicle_types = [
        VehicleType(
            # More vehicles than clients are never used; PyVRP allocates per vehicle, though.
            num_available=min(vehicle.count, max(1, len(clients))),
            capacity=vehicle.capacity,
            start_depot=depot_index[vehicle.depot],
            end_depot=depot_index[vehicle.end_depot or vehicle.depot],
            tw_early=_early(vehicle.shift),
            tw_late=_late(vehicle.shift),
            name=vehicle.id,
        )
        for vehicle in request.vehicle_types
    ]
    depots = [
        Depot(location=i, tw_early=_early(depot.time_window), tw_late=_late(depot.time_window), name=depot.id)
        for i, depot in enumerate(request.depots)
    ]
    data = ProblemData(
        locations=_locations(request),
        clients=clients,
        depots=depots,
        vehicle_types=vehicle_types,
        # PyVRP's stub spells an int64 matrix `ndarray[int]`, which no real array type matches.
        distance_matrices=[distances],  # type: ignore[list-item]
        duration_matrices=[durations],  # type: ignore[list-item]
    )
    return Problem(data=data, client_stops=client_stops, unservable=unservable)


def _client(request: SolveRequest, location: int, index: int) -> Client:
    stop = request.stops[index]
    return Client(
        location=location,
        delivery=stop.demand,
        service_duration=stop.service_duration,
        tw_early=_early(stop.time_window),
        tw_late=_late(stop.time_window),
        # A required stop's prize would only add a constant to the objective.
        prize=0 if stop.required else stop.prize,
        required=stop.required,
        name=stop.id,
    )


def _early(window: tuple[int, int] | None) -> int:
    return 0 if window is None else window[0]


def _late(window: tuple[int, int] | None) -> int:
    # PyVRP's own default for "unconstrained".
    return _PYVRP_UNBOUNDED if window is None else window[1]


def _locations(request: SolveRequest) -> list[Location]:
    # PyVRP only keeps coordinates for display; lon/lat map onto x/y.
    places = request.locations
    if request.location_kind == "latlon":
        return [Location(x=float(p.lon or 0), y=float(p.lat or 0)) for p in places]
    return [Location(x=float(p.x or 0), y=float(p.y or 0)) for p in places]


def _servable_alone(request: SolveRequest, durations: IntMatrix) -> NDArray[np.bool_]:
    """Per stop: can some vehicle type serve it on a route of its own (capacity and times)?

    Leaving as early as shift and depot allow is never worse, since waiting is free; so one
    forward pass per vehicle type decides it, vectorised over the stops.
    """
    first_stop = len(request.depots)
    demand = np.array([stop.demand for stop in request.stops], dtype=np.int64)
    early, late = _windows([stop.time_window for stop in request.stops])
    service = np.array([stop.service_duration for stop in request.stops], dtype=np.int64)
    depots = {depot.id: (i, depot.time_window or (0, _UNBOUNDED)) for i, depot in enumerate(request.depots)}
    servable = np.zeros(len(request.stops), dtype=np.bool_)
    for vehicle in request.vehicle_types:
        start, (start_open, start_close) = depots[vehicle.depot]
        end, (end_open, end_close) = depots[vehicle.end_depot or vehicle.depot]
        shift_start, shift_end = vehicle.shift or (0, _UNBOUNDED)
        leave = max(shift_start, start_open)
        if leave > min(shift_end, start_close):
            continue
        begin = np.maximum(leave + durations[start, first_stop:], early)
        back = np.maximum(begin + service + durations[first_stop:, end], end_open)
        fits = (demand <= np.array(vehicle.capacity, dtype=np.int64)).all(axis=1)
        servable |= fits & (begin <= late) & (back <= min(shift_end, end_close))
    return servable


def _windows(windows: list[tuple[int, int] | None]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    pairs = np.array([window or (0, _UNBOUNDED) for window in windows], dtype=np.int64).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]
