"""An independent check of a solution payload against its request document and matrices.

Deliberately shares no code with service.solving: it reads the raw request document (applying
the documented defaults itself) and recomputes every figure from the matrices, so a defect in
the solver's model of the problem cannot hide behind the same defect here.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import numpy as np

UNBOUNDED = 2**62


def _load(value: int | list[int]) -> list[int]:
    return [value] if isinstance(value, int) else list(value)


def _window(item: dict[str, Any], key: str) -> tuple[int, int]:
    window = item.get(key)
    return (0, UNBOUNDED) if window is None else (window[0], window[1])


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
    vehicles = {vehicle["id"]: vehicle for vehicle in document["vehicle_types"]}

    if expect_feasible:
        assert payload["feasible"] is True, "the payload is not feasible"

    visited = [stop for route in payload["routes"] for stop in route["stops"]]
    listed = visited + list(payload["unassigned"])
    unknown = set(listed) - stops.keys()
    assert not unknown, f"unknown stop ids: {sorted(unknown)}"
    repeated = [stop for stop, n in Counter(listed).items() if n > 1]
    assert not repeated, f"stops listed more than once: {sorted(repeated)}"
    missing = [sid for sid, (_, stop) in stops.items() if stop.get("required", True) and sid not in listed]
    assert not missing, f"required stops neither routed nor unassigned: {missing}"

    used = Counter(route["vehicle_type"] for route in payload["routes"])
    for vehicle_id, n in used.items():
        assert vehicle_id in vehicles, f"unknown vehicle type {vehicle_id!r}"
        assert n <= vehicles[vehicle_id]["count"], (
            f"{n} routes for {vehicle_id!r}, only {vehicles[vehicle_id]['count']} vehicles"
        )

    total_distance = total_duration = 0
    for number, route in enumerate(payload["routes"]):
        where = f"route {number} ({route['vehicle_type']})"
        vehicle = vehicles[route["vehicle_type"]]
        start_index, start_depot = depots[vehicle["depot"]]
        end_index, end_depot = depots[vehicle.get("end_depot") or vehicle["depot"]]
        places = [stops[sid][0] for sid in route["stops"]]
        assert places, f"{where} visits no stop"

        path = [start_index, *places, end_index]
        distance = int(sum(distances[a, b] for a, b in itertools.pairwise(path)))
        assert route["distance"] == distance, (
            f"{where}: distance {route['distance']} != matrix sum {distance}"
        )
        total_distance += distance

        capacity = _load(vehicle["capacity"])
        load = [0] * len(capacity)
        for sid in route["stops"]:
            for k, amount in enumerate(_load(stops[sid][1]["demand"])):
                load[k] += amount
        assert list(route["load"]) == load, f"{where}: load {route['load']} != demands {load}"
        assert all(a <= c for a, c in zip(load, capacity, strict=True)), (
            f"{where}: load {load} > capacity {capacity}"
        )

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
        total_duration += route["duration"]

        arrivals = route["arrivals"]
        assert len(arrivals) == len(places), f"{where}: {len(arrivals)} arrivals for {len(places)} stops"
        ready, here = start, start_index
        for sid, place, arrival in zip(route["stops"], places, arrivals, strict=True):
            stop = stops[sid][1]
            earliest = ready + int(durations[here, place])
            assert arrival >= earliest, (
                f"{where}: service at {sid} begins {arrival}, before it can arrive ({earliest})"
            )
            window = _window(stop, "time_window")
            assert window[0] <= arrival <= window[1], (
                f"{where}: service at {sid} begins {arrival}, outside {window}"
            )
            ready, here = arrival + stop.get("service_duration", 0), place
        back = ready + int(durations[here, end_index])
        assert end >= back, f"{where}: ends {end}, before it can be back ({back})"

    assert payload["distance"] == total_distance, f"total distance {payload['distance']} != {total_distance}"
    assert payload["duration"] == total_duration, f"total duration {payload['duration']} != {total_duration}"
