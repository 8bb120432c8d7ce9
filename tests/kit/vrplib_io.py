"""VRPLIB benchmark instances as solvable requests with an explicit matrix.

`pyvrp.read` does the parsing and the scaling, so a request measures exactly what PyVRP's own
benchmarks measure: "round" (CVRP, e.g. E-n22-k4) rounds Euclidean distances to the nearest
integer; "dimacs" (Solomon VRPTW, e.g. RC208) scales every value by 10 and truncates.
Stop ids are the VRPLIB location numbers that solution files (.sol) use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyvrp

RoundFunc = Literal["round", "dimacs"]

# What PyVRP's reader puts where an instance sets no bound.
_NO_BOUND = np.iinfo(np.int64).max


def request_from_vrplib(path: Path | str, *, round_func: RoundFunc) -> dict[str, Any]:
    data = pyvrp.read(path, round_func=round_func)
    if data.num_load_dimensions != 1 or data.num_vehicle_types != 1 or data.num_depots != 1:
        raise ValueError("only single-depot instances with one load dimension are supported")
    locations = data.locations()
    depot = data.depot(0)
    vehicle = data.vehicle_type(0)
    distances = data.distance_matrix(0)
    durations = data.duration_matrix(0)
    matrix: dict[str, Any] = {"distances": distances.tolist()}
    if not np.array_equal(distances, durations):
        matrix["durations"] = durations.tolist()
    return {
        "depots": [{"id": "depot", "location": _place(locations[depot.location]), **_window(depot)}],
        "stops": [
            {
                "id": str(client.location),
                "location": _place(locations[client.location]),
                "demand": client.delivery[0],
                "service_duration": client.service_duration,
                **_window(client),
            }
            for client in data.clients()
        ],
        "vehicle_types": [
            {
                "id": "vehicle",
                "count": vehicle.num_available,
                "capacity": vehicle.capacity[0],
                "depot": "depot",
                # PyVRP's reader puts the depot's VRPLIB time window on the vehicle type.
                **_window(vehicle, key="shift"),
            }
        ],
        "matrix": matrix,
    }


def _place(location: pyvrp.Location) -> dict[str, float]:
    return {"x": float(location.x), "y": float(location.y)}


def _window(
    item: pyvrp.Depot | pyvrp.Client | pyvrp.VehicleType, *, key: str = "time_window"
) -> dict[str, list[int]]:
    if item.tw_early == 0 and item.tw_late == _NO_BOUND:
        return {}
    return {key: [item.tw_early, item.tw_late]}
