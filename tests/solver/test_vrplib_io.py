"""VRPLIB instances as requests: the matrices PyVRP's benchmarks use, ids that .sol files use."""

from __future__ import annotations

import itertools

import numpy as np

from service.solver.matrix import build_matrices
from service.solver.request import parse_solve_request
from tests.kit.instances import DATA
from tests.kit.vrplib_io import request_from_vrplib


def _routes(solution_file: str) -> list[list[str]]:
    lines = (DATA / solution_file).read_text().splitlines()
    return [line.split(":")[1].split() for line in lines if line.startswith("Route")]


def test_rc208_best_known_routes_measure_7761_on_the_converted_matrix() -> None:
    document = request_from_vrplib(DATA / "RC208.vrp", round_func="dimacs")
    request = parse_solve_request(document, max_stops=200)
    distances, _ = build_matrices(request)
    index = {stop["id"]: 1 + i for i, stop in enumerate(document["stops"])}
    total = 0
    for route in _routes("RC208.sol"):
        path = [0, *(index[stop] for stop in route), 0]
        total += sum(int(distances[a, b]) for a, b in itertools.pairwise(path))
    assert total == 7761
    assert len(document["stops"]) == 100 and document["vehicle_types"][0]["count"] == 25
    # ×10 and truncated, like the distances: RC208's service time of 10 and the depot's hours.
    assert {stop["service_duration"] for stop in document["stops"]} == {100}
    assert document["vehicle_types"][0]["shift"] == [0, 9600]
    assert document["stops"][0]["time_window"] == [3880, 9110]


def test_e_n22_k4_uses_rounded_euclidean_distances() -> None:
    document = request_from_vrplib(DATA / "E-n22-k4.vrp", round_func="round")
    request = parse_solve_request(document, max_stops=100)
    given, durations = build_matrices(request)
    # The same instance as plain x/y: our own Euclidean rounding must agree with PyVRP's reader.
    del document["matrix"]
    computed, _ = build_matrices(parse_solve_request(document, max_stops=100))
    assert np.array_equal(given, computed) and np.array_equal(durations, given)
    assert document["vehicle_types"][0]["capacity"] == 6000
    assert document["stops"][0] == {
        "id": "1",
        "location": {"x": 151.0, "y": 264.0},
        "demand": 1100,
        "service_duration": 0,
    }
