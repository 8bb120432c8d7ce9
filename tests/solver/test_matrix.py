"""Matrices from a request: great-circle metres and travel seconds, Euclidean, or given."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.solver.matrix import build_matrices
from service.solver.request import parse_solve_request

# Brandenburger Tor, Berlin -> Potsdam (Alter Markt area). Their geodesic on the WGS84
# ellipsoid (Vincenty's inverse formula) is 25,177.4 m; a sphere of mean radius stays within 0.3 %.
BERLIN = {"lat": 52.5163, "lon": 13.3777}
POTSDAM = {"lat": 52.4009, "lon": 13.0591}
BERLIN_POTSDAM_M = 25_177.4


def _request(locations: list[dict[str, float]], **extra: Any) -> dict[str, Any]:
    return {
        "depots": [{"id": "depot", "location": locations[0]}],
        "stops": [{"id": f"s{i}", "location": loc, "demand": 1} for i, loc in enumerate(locations[1:])],
        "vehicle_types": [{"id": "v", "count": 1, "capacity": 10, "depot": "depot"}],
        **extra,
    }


def test_lat_lon_distance_matches_the_known_geodesic() -> None:
    distances, durations = build_matrices(parse_solve_request(_request([BERLIN, POTSDAM]), max_stops=10))
    assert distances.dtype == np.int64 and durations.dtype == np.int64
    assert abs(distances[0, 1] - BERLIN_POTSDAM_M) <= 0.01 * BERLIN_POTSDAM_M
    assert distances[0, 1] == distances[1, 0] and distances[0, 0] == 0
    # 40 km/h by default: metres / (40 / 3.6) seconds, rounded.
    assert durations[0, 1] == round(distances[0, 1] / (40 / 3.6))


def test_durations_follow_the_speed_option() -> None:
    document = _request([BERLIN, POTSDAM], options={"speed_kmh": 90})
    distances, durations = build_matrices(parse_solve_request(document, max_stops=10))
    assert durations[0, 1] == round(distances[0, 1] / 25)


def test_a_quarter_meridian_is_a_quarter_of_the_mean_circumference() -> None:
    document = _request([{"lat": 0, "lon": 7}, {"lat": 90, "lon": 7}, {"lat": 0, "lon": 97}])
    distances, _ = build_matrices(parse_solve_request(document, max_stops=10))
    quarter = round(math.pi * 6_371_008.8 / 2)
    assert distances[0, 1] == quarter and distances[0, 2] == quarter and distances[1, 2] == quarter


def test_planar_distances_are_rounded_to_the_nearest_integer() -> None:
    points = [{"x": 0, "y": 0}, {"x": 1, "y": 1}, {"x": 2, "y": 3}, {"x": 0.25, "y": 0}, {"x": 0.75, "y": 0}]
    distances, durations = build_matrices(parse_solve_request(_request(points), max_stops=10))
    # √2 = 1.414 -> 1, √13 = 3.606 -> 4, 0.25 -> 0, 0.75 -> 1, √(1.75² + 3²) = 3.47 -> 3
    assert distances[0].tolist() == [0, 1, 4, 0, 1]
    assert distances[2, 3] == 3
    assert np.array_equal(durations, distances)


def test_an_explicit_matrix_is_used_as_given() -> None:
    given = [[0, 5, 9], [4, 0, 7], [8, 6, 0]]
    document = _request(
        [{"x": 0, "y": 0}, {"x": 100, "y": 0}, {"x": 0, "y": 100}], matrix={"distances": given}
    )
    distances, durations = build_matrices(parse_solve_request(document, max_stops=10))
    assert distances.tolist() == given and durations.tolist() == given

    document["matrix"]["durations"] = [[0, 50, 90], [40, 0, 70], [80, 60, 0]]
    distances, durations = build_matrices(parse_solve_request(document, max_stops=10))
    assert distances.tolist() == given and durations.tolist() == document["matrix"]["durations"]
