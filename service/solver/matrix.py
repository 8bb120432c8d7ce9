"""Distance and duration matrices of a request: given, great-circle (lat/lon) or Euclidean (x/y).

Rows and columns follow the request: depots first, then stops, as listed.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from service.solver.request import MAX_INT, IntMatrix, SolveRequest

EARTH_RADIUS_M = 6_371_008.8  # the mean Earth radius (IUGG)


def build_matrices(request: SolveRequest) -> tuple[IntMatrix, IntMatrix]:
    """(distances in metres, durations in seconds), int64; the two may be one array: don't mutate."""
    if request.matrix is not None:
        distances = request.matrix.distances
        return distances, distances if request.matrix.durations is None else request.matrix.durations
    locations = request.locations
    if request.location_kind == "latlon":
        lat = np.radians(np.array([location.lat for location in locations], dtype=np.float64))
        lon = np.radians(np.array([location.lon for location in locations], dtype=np.float64))
        metres = np.rint(great_circle_metres(lat, lon))
        distances = metres.astype(np.int64)
        metres /= request.options.speed_kmh / 3.6  # now seconds, from the rounded metres
        return distances, _to_int(metres)
    x = np.array([location.x for location in locations], dtype=np.float64)
    y = np.array([location.y for location in locations], dtype=np.float64)
    distances = _to_int(euclidean(x, y))
    return distances, distances


def great_circle_metres(lat: NDArray[np.float64], lon: NDArray[np.float64]) -> NDArray[np.float64]:
    """Haversine distances between all pairs of points given in radians.

    sin((a - b) / 2) is expanded to sin(a/2)cos(b/2) - cos(a/2)sin(b/2): two outer products
    instead of n² sine evaluations, which is most of the cost. The diagonal comes out exactly 0
    and the matrix exactly symmetric, because both are differences of identical products.
    """
    half_sin_lat = _half_angle_sines(lat)
    haversine = _half_angle_sines(lon)
    cos_lat = np.cos(lat)
    haversine *= cos_lat[:, None]
    haversine *= cos_lat[None, :]
    haversine += half_sin_lat
    np.sqrt(haversine, out=haversine)
    np.minimum(haversine, 1.0, out=haversine)  # rounding may push antipodal points past 1
    np.arcsin(haversine, out=haversine)
    haversine *= 2 * EARTH_RADIUS_M
    return haversine


def _half_angle_sines(angles: NDArray[np.float64]) -> NDArray[np.float64]:
    """sin²((angles[i] - angles[j]) / 2) for all pairs."""
    sines, cosines = np.sin(angles / 2), np.cos(angles / 2)
    result = np.multiply.outer(sines, cosines)
    result -= np.multiply.outer(cosines, sines)
    np.square(result, out=result)
    return result


def euclidean(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    dx = np.subtract.outer(x, x)
    return np.hypot(dx, np.subtract.outer(y, y), out=dx)


def _to_int(values: NDArray[np.float64]) -> IntMatrix:
    """Rounded to the nearest integer (in place) and capped like an explicit matrix's cells.

    Only a near-zero speed or planar coordinates at the bounds reach the cap; such a trip is
    unreachable in any planning horizon either way.
    """
    np.rint(values, out=values)
    np.minimum(values, MAX_INT, out=values)
    return values.astype(np.int64)
