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


# The benchmark instances the tests solve (VRPLIB files from the literature).
DATA = Path(__file__).parent / "data"


def benchmark_request(name: str) -> dict[str, Any]:
    return request_from_vrplib(DATA / name, round_func="dimacs" if name.startswith("RC") else "round")
