"""An independent check of a solution payload against its request document and matrices.

Deliberately shares no code with service.solving: it reads the raw request document (applying
the documented defaults itself) and recomputes every figure from the matrices, so a defect in
the solver's model of the problem cannot hide behind the same defect here.
"""

from __future__ import annotations

import itertools
from collections import Counter
from fractions import Fraction
from typing import Any

import numpy as np

UNBOUNDED = 2**62


def _load(value: int | list[int]) -> list[int]:
    return [value] if isinstance(value, int) else list(value)


def _window(item: dict[str, Any], key: str) -> tuple[int, int]:
    window = item.get(key)
    return (0, UNBOUNDED) if window is None else (window[0], window[1])


REASON_CODES = {
    "demand_exceeds_capacity",
    "time_window_unreachable",
    "outside_every_shift",
    "route_limit",
    "pin_conflict",
    "not_worth_serving",
    "no_capacity_left",
}


def check_solution(
    document: dict[str, Any],
    distances: np.ndarray,
    durations: np.ndarray,
    payload: dict[str, Any],
    *,
    expect_feasible: bool = True,
) -> None:
    """Raise AssertionError naming the first violated rule."""
    depots = {depot["id"]: (i, depot) for i, depot in enumerate(document["depots"])}
    first_stop = len(document["depots"])
    stops = {stop["id"]: (first_stop + i, stop) for i, stop in enumerate(document["stops"])}
    first_shipment = first_stop + len(document["stops"])
    shipments = {
        shipment["id"]: (first_shipment + 2 * i, shipment)
        for i, shipment in enumerate(document.get("shipments", []))
    }
    vehicles = {vehicle["id"]: vehicle for vehicle in document["vehicle_types"]}

    if expect_feasible:
        assert payload["feasible"] is True, "the payload is not feasible"

    visited = [stop for route in payload["routes"] for stop in route["stops"]]
    carried = [
        visit["id"] for route in payload["routes"] for visit in route["visits"] if visit["kind"] == "pickup"
    ]
    unassigned = [entry["id"] for entry in payload["unassigned"]]
    for entry in payload["unassigned"]:
        assert entry["reasons"], f"{entry['id']} is unassigned without a reason"
        assert set(entry["reasons"]) <= REASON_CODES, f"unknown reason codes {entry['reasons']}"
    listed = visited + carried + unassigned
    unknown = set(listed) - stops.keys() - shipments.keys()
    assert not unknown, f"unknown stop ids: {sorted(unknown)}"
    repeated = [stop for stop, n in Counter(listed).items() if n > 1]
    assert not repeated, f"stops listed more than once: {sorted(repeated)}"
    missing = [sid for sid, (_, stop) in stops.items() if stop.get("required", True) and sid not in listed]
    missing += [sid for sid in shipments if sid not in listed]
    assert not missing, f"required stops neither routed nor unassigned: {missing}"
    required = sum(1 for sid in unassigned if sid in shipments or stops[sid][1].get("required", True))
    assert payload["unassigned_required"] == required, (
        f"unassigned_required {payload['unassigned_required']} != {required}"
    )

    used = Counter(route["vehicle_type"] for route in payload["routes"])
    for vehicle_id, n in used.items():
        assert vehicle_id in vehicles, f"unknown vehicle type {vehicle_id!r}"
        assert n <= vehicles[vehicle_id]["count"], (
            f"{n} routes for {vehicle_id!r}, only {vehicles[vehicle_id]['count']} vehicles"
        )
        numbers = sorted(
            route["vehicle"] for route in payload["routes"] if route["vehicle_type"] == vehicle_id
        )
        # Distinct vehicles of the type; not necessarily 0..n-1: pins name vehicles, and a re-solve
        # keeps the earlier numbers.
        count = vehicles[vehicle_id]["count"]
        assert len(set(numbers)) == n and all(0 <= number < count for number in numbers), (
            f"{vehicle_id!r} routes are numbered {numbers}"
        )

    total_distance = total_duration = 0
    total_cost = Fraction(0)
    for number, route in enumerate(payload["routes"]):
        where = f"route {number} ({route['vehicle_type']})"
        vehicle = vehicles[route["vehicle_type"]]
        start_index, start_depot = depots[vehicle["depot"]]
        end_index, end_depot = depots[vehicle.get("end_depot") or vehicle["depot"]]
        visits = route["visits"]
        assert visits, f"{where} visits no stop"
        stop_visits = [visit for visit in visits if visit["kind"] == "stop"]
        assert route["stops"] == [visit["id"] for visit in stop_visits], f"{where}: stops differ from visits"
        assert route["arrivals"] == [visit["arrival"] for visit in stop_visits], f"{where}: arrivals differ"

        places = []
        for visit in visits:
            kind = visit["kind"]
            if kind == "stop":
                places.append(stops[visit["id"]][0])
            elif kind == "reload":
                assert visit["id"] in vehicle.get("reload_depots", []), f"{where}: reload at {visit['id']}"
                places.append(depots[visit["id"]][0])
            else:
                places.append(shipments[visit["id"]][0] + (kind == "delivery"))
        reloads = sum(1 for visit in visits if visit["kind"] == "reload")
        assert reloads <= vehicle.get("max_reloads", UNBOUNDED), f"{where}: {reloads} reloads"
        if reloads:
            assert route.get("trips") == reloads + 1, (
                f"{where}: trips {route.get('trips')} for {reloads} reloads"
            )
        else:
            assert route.get("trips") is None, f"{where}: trips without reloads"

        path = [start_index, *places, end_index]
        distance = int(sum(distances[a, b] for a, b in itertools.pairwise(path)))
        assert route["distance"] == distance, (
            f"{where}: distance {route['distance']} != matrix sum {distance}"
        )
        assert distance <= vehicle.get("max_distance", UNBOUNDED), f"{where}: over max_distance"
        total_distance += distance

        _check_loads(where, vehicle, visits, stops, shipments, route["load"])

        shift = _window(vehicle, "shift")
        start_open = _window(start_depot, "time_window")
        end_open = _window(end_depot, "time_window")
        start, end = route["start"], route["end"]
        assert shift[0] <= start <= shift[1], f"{where}: start {start} outside shift {shift}"
        assert start_open[0] <= start <= start_open[1], (
            f"{where}: start {start} outside depot hours {start_open}"
        )
        assert shift[0] <= end <= shift[1], f"{where}: end {end} outside shift {shift}"
        assert end_open[0] <= end <= end_open[1], f"{where}: end {end} outside end depot hours {end_open}"
        assert route["duration"] == end - start, f"{where}: duration {route['duration']} != end - start"
        assert route["duration"] <= vehicle.get("max_duration", UNBOUNDED), f"{where}: over max_duration"
        total_duration += route["duration"]
        total_cost += vehicle.get("fixed_cost", 0)
        total_cost += Fraction(vehicle.get("cost_per_km", 0) * distance, 1000)
        total_cost += Fraction(vehicle.get("cost_per_hour", 0) * route["duration"], 3600)

        ready, here = start, start_index
        for visit, place in zip(visits, places, strict=True):
            arrival = visit["arrival"]
            earliest = ready + int(durations[here, place])
            assert arrival >= earliest, (
                f"{where}: service at {visit['id']} begins {arrival}, before it can arrive ({earliest})"
            )
            service = 0
            if visit["kind"] == "stop":
                window = _window(stops[visit["id"]][1], "time_window")
                service = stops[visit["id"]][1].get("service_duration", 0)
            elif visit["kind"] == "reload":
                window = _window(depots[visit["id"]][1], "time_window")
            else:
                step = shipments[visit["id"]][1][visit["kind"]]
                window = _window(step, "time_window")
                service = step.get("service_duration", 0)
            assert window[0] <= arrival <= window[1], (
                f"{where}: service at {visit['id']} begins {arrival}, outside {window}"
            )
            ready, here = arrival + service, place
        back = ready + int(durations[here, end_index])
        assert end >= back, f"{where}: ends {end}, before it can be back ({back})"

    assert payload["distance"] == total_distance, f"total distance {payload['distance']} != {total_distance}"
    assert payload["duration"] == total_duration, f"total duration {payload['duration']} != {total_duration}"
    assert payload["cost"] == round(total_cost), f"cost {payload['cost']} != {round(total_cost)}"


def _check_loads(
    where: str,
    vehicle: dict[str, Any],
    visits: list[dict[str, Any]],
    stops: dict[str, tuple[int, dict[str, Any]]],
    shipments: dict[str, tuple[int, dict[str, Any]]],
    load: list[int],
) -> None:
    """Trip by trip: a trip leaves its depot with its stops' demands (and the shipments on board);
    stops unload, pickups load, deliveries unload; the load never exceeds the capacity. Every
    shipment is delivered after its pickup, on the same route."""
    capacity = _load(vehicle["capacity"])
    delivered = [0] * len(capacity)
    for visit in visits:
        if visit["kind"] == "stop":
            delivered = [
                a + b for a, b in zip(delivered, _load(stops[visit["id"]][1]["demand"]), strict=True)
            ]
    assert list(load) == delivered, f"{where}: load {load} != demands {delivered}"

    trips: list[list[dict[str, Any]]] = [[]]
    for visit in visits:
        if visit["kind"] == "reload":
            trips.append([])
        else:
            trips[-1].append(visit)
    on_board: set[str] = set()
    picked: set[str] = set()
    for trip in trips:
        current = [0] * len(capacity)
        for sid in on_board:
            current = [a + b for a, b in zip(current, _load(shipments[sid][1]["amount"]), strict=True)]
        for visit in trip:
            if visit["kind"] == "stop":
                current = [
                    a + b for a, b in zip(current, _load(stops[visit["id"]][1]["demand"]), strict=True)
                ]
        assert all(a <= c for a, c in zip(current, capacity, strict=True)), (
            f"{where}: a trip leaves with {current} > capacity {capacity}"
        )
        for visit in trip:
            sign = {"stop": -1, "pickup": 1, "delivery": -1}[visit["kind"]]
            amount = _load(
                (stops if visit["kind"] == "stop" else shipments)[visit["id"]][1][
                    "demand" if visit["kind"] == "stop" else "amount"
                ]
            )
            if visit["kind"] == "pickup":
                assert visit["id"] not in picked, f"{where}: {visit['id']} picked up twice"
                picked.add(visit["id"])
                on_board.add(visit["id"])
            elif visit["kind"] == "delivery":
                assert visit["id"] in on_board, f"{where}: {visit['id']} delivered before its pickup"
                on_board.remove(visit["id"])
            current = [a + sign * b for a, b in zip(current, amount, strict=True)]
            assert all(a <= c for a, c in zip(current, capacity, strict=True)), (
                f"{where}: load {current} > capacity {capacity} after {visit['id']}"
            )
    assert not on_board, f"{where}: shipments never delivered: {sorted(on_board)}"
