"""A request and its matrices as PyVRP `ProblemData`, built directly from the numpy matrices.

`Model.add_edge` would cost one Python call per matrix cell (4 million for 2,000 stops);
`ProblemData` takes the int64 matrices as they are, with the same `Client`, `Shipment`, `Depot` and
`VehicleType` objects `Model` would build. Matrix rows follow the request (depots, stops, then each
shipment's pickup and delivery), so PyVRP location i is request place i; a stop or shipment left out
of the problem keeps its rows.

Every feature is PyVRP's own: shipments are `Shipment`s (same vehicle, pickup first), optional stops
`Client(required=False, prize=...)`, reloads `VehicleType.reload_depots`/`max_reloads`, route limits
`max_distance` and `shift_duration` (no overtime), costs `fixed_cost`, `unit_distance_cost` and
`unit_duration_cost`.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
from pyvrp import Client, Depot, Location, ProblemData, Shipment, VehicleType

from service.solver.reasons import Reasons, reasons_before
from service.solver.request import IntMatrix, SolveRequest
from service.solver.request import VehicleType as VehicleTypeInput

_PYVRP_UNBOUNDED = int(np.iinfo(np.int64).max)
_PYVRP_UNBOUNDED_RELOADS = int(np.iinfo(np.uint64).max)
_METRES_PER_KM = 1000
_SECONDS_PER_HOUR = 3600


@dataclass(frozen=True, slots=True)
class Problem:
    data: ProblemData
    # PyVRP client index -> index into request.stops.
    client_stops: list[int]
    # PyVRP shipment index -> index into request.shipments.
    shipment_items: list[int] = field(default_factory=list)
    # Stops and shipments left out before solving (nothing could serve them), with the reasons.
    left_out: Reasons = field(default_factory=dict)
    # PyVRP's objective units per unit of the request's objective: 1 for distance (metres); for
    # cost, the smallest multiple of the currency unit in which every per-metre and per-second
    # cost is a whole number (at most 18,000: per 1,000 m and per 3,600 s).
    scale: int = 1


def build_problem(
    request: SolveRequest,
    distances: IntMatrix,
    durations: IntMatrix,
    *,
    pin_conflicts: Collection[str] = (),
) -> Problem:
    """`pin_conflicts`: ids of stops and shipments that pins rule out; they are left out with that
    reason (the re-planning code decides which)."""
    left_out = reasons_before(request, distances, durations)
    for item in pin_conflicts:
        left_out.setdefault(item, []).append("pin_conflict")
    client_stops = [i for i, stop in enumerate(request.stops) if stop.id not in left_out]
    shipment_items = [i for i, shipment in enumerate(request.shipments) if shipment.id not in left_out]
    scale = cost_scale(request)
    first_stop = len(request.depots)
    clients = [_client(request, first_stop + i, i, scale) for i in client_stops]
    first_shipment = first_stop + len(request.stops)
    shipments = [_shipment(request, first_shipment + 2 * i, i) for i in shipment_items]
    depot_index = {depot.id: i for i, depot in enumerate(request.depots)}
    tasks = max(1, len(clients) + len(shipments))
    vehicle_types = [
        _vehicle_type(request, vehicle, depot_index, tasks, scale) for vehicle in request.vehicle_types
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
        shipments=shipments,
    )
    return Problem(
        data=data, client_stops=client_stops, shipment_items=shipment_items, left_out=left_out, scale=scale
    )


def cost_scale(request: SolveRequest) -> int:
    """1 for the distance objective; for cost, see `Problem.scale`."""
    if request.options.objective == "distance":
        return 1
    per_km = math.gcd(*(vehicle.cost_per_km for vehicle in request.vehicle_types))
    per_hour = math.gcd(*(vehicle.cost_per_hour for vehicle in request.vehicle_types))
    return math.lcm(
        _METRES_PER_KM // math.gcd(_METRES_PER_KM, per_km),
        _SECONDS_PER_HOUR // math.gcd(_SECONDS_PER_HOUR, per_hour),
    )


def _vehicle_type(
    request: SolveRequest, vehicle: VehicleTypeInput, depot_index: dict[str, int], tasks: int, scale: int
) -> VehicleType:
    costs = request.options.objective == "cost"
    return VehicleType(
        # More vehicles than clients are never used; PyVRP allocates per vehicle, though.
        num_available=min(vehicle.count, tasks),
        capacity=vehicle.capacity,
        start_depot=depot_index[vehicle.depot],
        end_depot=depot_index[vehicle.end_depot or vehicle.depot],
        tw_early=_early(vehicle.shift),
        tw_late=_late(vehicle.shift),
        # Without overtime, the shift duration is a hard limit on a route's duration.
        shift_duration=_PYVRP_UNBOUNDED if vehicle.max_duration is None else vehicle.max_duration,
        max_distance=_PYVRP_UNBOUNDED if vehicle.max_distance is None else vehicle.max_distance,
        # The distance objective is PyVRP's default: one unit per metre, nothing else.
        fixed_cost=vehicle.fixed_cost * scale if costs else 0,
        unit_distance_cost=vehicle.cost_per_km * scale // _METRES_PER_KM if costs else 1,
        unit_duration_cost=vehicle.cost_per_hour * scale // _SECONDS_PER_HOUR if costs else 0,
        reload_depots=[depot_index[depot] for depot in vehicle.reload_depots or ()],
        max_reloads=_PYVRP_UNBOUNDED_RELOADS if vehicle.max_reloads is None else vehicle.max_reloads,
        name=vehicle.id,
    )


def _client(request: SolveRequest, location: int, index: int, scale: int) -> Client:
    stop = request.stops[index]
    return Client(
        location=location,
        delivery=stop.demand,
        service_duration=stop.service_duration,
        tw_early=_early(stop.time_window),
        tw_late=_late(stop.time_window),
        # A required stop's prize would only add a constant to the objective.
        prize=0 if stop.required else stop.prize * scale,
        required=stop.required,
        name=stop.id,
    )


def _shipment(request: SolveRequest, pickup_location: int, index: int) -> Shipment:
    shipment = request.shipments[index]
    pickup, delivery = shipment.pickup, shipment.delivery
    return Shipment(
        pickup_location=pickup_location,
        delivery_location=pickup_location + 1,
        pickup_tw_early=_early(pickup.time_window),
        pickup_tw_late=_late(pickup.time_window),
        pickup_service_duration=pickup.service_duration,
        delivery_tw_early=_early(delivery.time_window),
        delivery_tw_late=_late(delivery.time_window),
        delivery_service_duration=delivery.service_duration,
        amount=shipment.amount,
        name=shipment.id,
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
