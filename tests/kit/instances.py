"""Synthetic requests and the timings of solving's fixed costs, for benchmarks and tests.

Each measure returns a median of seconds; nothing here asserts a target.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from service.solver.matrix import build_matrices
from service.solver.request import parse_solve_request
from tests.kit.vrplib_io import request_from_vrplib

_BERLIN = (52.52, 13.40)


def synthetic_request(stops: int, *, seed: int = 0, explicit_matrix: bool = False) -> dict[str, Any]:
    """`stops` random deliveries within ~20 km of central Berlin from one depot."""
    rng = np.random.default_rng(seed)
    lat = _BERLIN[0] + rng.uniform(-0.18, 0.18, stops)
    lon = _BERLIN[1] + rng.uniform(-0.3, 0.3, stops)
    demand = rng.integers(1, 6, stops)
    document: dict[str, Any] = {
        "depots": [{"id": "depot", "location": {"lat": _BERLIN[0], "lon": _BERLIN[1]}}],
        "stops": [
            {
                "id": f"s{i}",
                "location": {"lat": float(lat[i]), "lon": float(lon[i])},
                "demand": int(demand[i]),
                "service_duration": 120,
            }
            for i in range(stops)
        ],
        "vehicle_types": [{"id": "van", "count": stops // 10 + 1, "capacity": 50, "depot": "depot"}],
    }
    if explicit_matrix:
        distances, durations = build_matrices(parse_solve_request(document, max_stops=stops))
        document["matrix"] = {"distances": distances.tolist(), "durations": durations.tolist()}
    return document


def measure_matrix_build(stops: int = 2000, *, repeats: int = 5) -> float:
    """Median seconds of build_matrices() for `stops` lat/lon stops (great-circle, no matrix given)."""
    request = parse_solve_request(synthetic_request(stops), max_stops=stops)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        build_matrices(request)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def measure_reasons(stops: int = 2000, *, repeats: int = 5, left_out: int = 200) -> float:
    """Median CPU seconds of the reasons pass on `stops` lat/lon stops: the checks before the solve
    (three vehicle types, shifts, time windows, route limits) and after it, for `left_out` optional
    stops priced against a plan of routes of 20 stops each (every route edge a candidate).

    Process time, not wall time: the pass is single-threaded work inside the solver's process, and
    on a shared machine the wall clock mostly measures the neighbours."""
    from service.solver.problem import build_problem
    from service.solver.reasons import reasons_after, reasons_before

    document = synthetic_request(stops)
    rng = np.random.default_rng(1)
    for i, stop in enumerate(document["stops"]):
        start = int(rng.integers(25200, 50000))
        stop["time_window"] = [start, start + 7200]
        if i < left_out:
            stop.update(required=False, prize=int(rng.integers(1000, 20000)))
    document["vehicle_types"] = [
        {
            **document["vehicle_types"][0],
            "id": f"van-{k}",
            "shift": [25200 + 3600 * k, 64800],
            "max_distance": 150_000,
        }
        for k in range(3)
    ]
    request = parse_solve_request(document, max_stops=stops)
    distances, durations = build_matrices(request)
    problem = build_problem(request, distances, durations)
    depot, first = 0, len(request.depots)
    served = list(range(first + left_out, first + stops))
    routes = [(0, [depot, *served[i : i + 20], depot]) for i in range(0, len(served), 20)]
    missing = [stop.id for stop in request.stops[:left_out]]
    samples = []
    for _ in range(repeats):
        started = time.process_time()
        reasons_before(request, distances, durations)
        reasons_after(request, problem.data, problem.scale, missing, routes)
        samples.append(time.process_time() - started)
    return statistics.median(samples)


# The benchmark instances the tests solve (VRPLIB files from the literature).
DATA = Path(__file__).parent / "data"


def benchmark_request(name: str) -> dict[str, Any]:
    return request_from_vrplib(DATA / name, round_func="dimacs" if name.startswith("RC") else "round")
