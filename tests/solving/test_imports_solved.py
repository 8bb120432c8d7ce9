"""Imported scenarios solve as they are, through the API and a real worker: the benchmark instances
to within 1 % (E-n22-k4) and 3 % (RC208) of their best known values, measured here independently
from the files' own coordinates; a CSV of stops solves and draws as GeoJSON; two solves compare."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np

from tests.kit.checker import check_solution
from tests.kit.worker import WorkerProcess
from tests.planning.conftest import Caller
from tests.solving.conftest import until_status
from tests.solving.test_geojson import GEOJSON, check_rfc7946

DATA = Path(__file__).resolve().parents[1] / "kit" / "data"


def coordinates(path: Path) -> dict[int, tuple[float, float]]:
    """Node number → (x, y), read from the file's NODE_COORD_SECTION here, not by the service."""
    nodes: dict[int, tuple[float, float]] = {}
    lines = iter(path.read_text().splitlines())
    for line in lines:
        if line.strip() == "NODE_COORD_SECTION":
            break
    for line in lines:
        parts = line.split()
        if len(parts) != 3:
            break
        nodes[int(parts[0])] = (float(parts[1]), float(parts[2]))
    return nodes


def real_length(payload: dict[str, Any], nodes: dict[int, tuple[float, float]]) -> float:
    """Every route from the depot (node 1) through its stops (id = node - 1) back, in real distances."""
    total = 0.0
    for route in payload["routes"]:
        path = [1, *(int(stop) + 1 for stop in route["stops"]), 1]
        total += sum(math.dist(nodes[a], nodes[b]) for a, b in itertools.pairwise(path))
    return total


def rounded_matrix(request: dict[str, Any]) -> np.ndarray:
    """The x/y request's distances as the contract defines them: Euclidean, rounded to the nearest."""
    places = [p["location"] for p in request["depots"] + request["stops"]]
    xy = np.array([[p["x"], p["y"]] for p in places])
    return np.rint(np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))).astype(np.int64)


async def import_file(
    caller: Caller, body: str, content_type: str, **params: Any
) -> tuple[str, dict[str, Any]]:
    session = await caller.call("POST", "/sessions", {"name": "imports"})
    response = await caller.call(
        "POST",
        f"/sessions/{session.json()['id']}/scenarios/import",
        content=body.encode(),
        headers={"content-type": content_type},
        params=params,
    )
    assert response.status_code == 201, response.text
    scenario_id = str(response.json()["id"])
    request = (await caller.call("GET", f"/scenarios/{scenario_id}")).json()["request"]
    return scenario_id, request


async def solved(caller: Caller, scenario_id: str, **options: Any) -> dict[str, Any]:
    queued = await caller.call("POST", f"/scenarios/{scenario_id}/solve", options)
    assert queued.status_code == 202, queued.text
    done = await until_status(caller, queued.json()["id"], "succeeded", "failed", timeout=120)
    assert done["status"] == "succeeded", done
    return done


async def test_e_n22_k4_imported_solves_within_one_percent(alice: Caller, worker: WorkerProcess) -> None:
    path = DATA / "E-n22-k4.vrp"
    scenario_id, request = await import_file(alice, path.read_text(), "text/plain")
    payload = (await solved(alice, scenario_id, time_limit_s=1))["payload"]
    matrix = rounded_matrix(request)
    check_solution(request, matrix, matrix, payload)
    # The best known value, 375, is in rounded Euclidean distances: EUC_2D's own definition.
    assert payload["distance"] <= 375 * 1.01
    # Matrix rows: the depot, then stops "1" … "21" in order.
    paths = [[0, *(int(stop) for stop in route["stops"]), 0] for route in payload["routes"]]
    rounded = sum(int(matrix[a, b]) for visits in paths for a, b in itertools.pairwise(visits))
    assert rounded == payload["distance"]
    assert real_length(payload, coordinates(path)) <= 375 * 1.01


async def test_rc208_imported_solves_within_three_percent(alice: Caller, worker: WorkerProcess) -> None:
    path = DATA / "RC208.vrp"
    # Solomon's best known values are in real distances: scale 10 keeps a decimal.
    scenario_id, request = await import_file(alice, path.read_text(), "text/plain", scale=10)
    payload = (await solved(alice, scenario_id, time_limit_s=10))["payload"]
    matrix = rounded_matrix(request)
    check_solution(request, matrix, matrix, payload)  # capacities, time windows, every stop once
    best_known = 776.1  # tests/kit/data/RC208.sol
    assert payload["distance"] <= best_known * 10 * 1.03
    assert real_length(payload, coordinates(path)) <= best_known * 1.03


async def test_a_csv_import_solves_and_draws(alice: Caller, worker: WorkerProcess) -> None:
    rows = "".join(
        f"s{i},{52.45 + (i % 5) * 0.03:.4f},{13.30 + (i // 5) * 0.04:.4f},{1 + i % 3},120,08:00,18:00\n"
        for i in range(20)
    )
    csv = "id,lat,lon,demand,service_duration,tw_start,tw_end\n" + rows
    scenario_id, request = await import_file(
        alice, csv, "text/csv", depot_lat=52.52, depot_lon=13.40, vehicles=4, capacity=12
    )
    solution = await solved(alice, scenario_id, time_limit_s=1)
    served = [stop for route in solution["payload"]["routes"] for stop in route["stops"]]
    assert sorted(served) == sorted(stop["id"] for stop in request["stops"])

    drawn = await alice.call("GET", f"/solutions/{solution['id']}", headers={"Accept": GEOJSON})
    assert drawn.status_code == 200 and drawn.headers["content-type"] == GEOJSON
    document = drawn.json()
    check_rfc7946(document)
    places = {
        p["id"]: [p["location"]["lon"], p["location"]["lat"]] for p in request["depots"] + request["stops"]
    }
    lines = [f for f in document["features"] if f["geometry"]["type"] == "LineString"]
    assert len(lines) == len(solution["payload"]["routes"])
    for line, route in zip(lines, solution["payload"]["routes"], strict=True):
        depot = places[request["depots"][0]["id"]]
        assert line["geometry"]["coordinates"] == [depot, *(places[s] for s in route["stops"]), depot]
        assert line["properties"]["distance"] == route["distance"]
    points = [f["properties"] for f in document["features"] if f["geometry"]["type"] == "Point"]
    assert sorted(p["id"] for p in points) == sorted(served)


async def test_two_solves_of_one_scenario_compare(alice: Caller, worker: WorkerProcess) -> None:
    scenario_id, request = await import_file(alice, (DATA / "E-n22-k4.vrp").read_text(), "text/plain")
    a = await solved(alice, scenario_id, time_limit_s=1, seed=1)
    b = await solved(alice, scenario_id, time_limit_s=1, seed=2)
    response = await alice.call("GET", f"/solutions/{a['id']}/compare/{b['id']}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["kpis"]["distance"] == [
        a["payload"]["distance"],
        b["payload"]["distance"],
        b["payload"]["distance"] - a["payload"]["distance"],
    ]
    assert body["kpis"]["routes"][:2] == [len(a["payload"]["routes"]), len(b["payload"]["routes"])]
    changes = body["stops"]
    # Every stop served by b is unchanged, moved or added; all 21 are served by both.
    assert changes["unchanged"] + len(changes["moved"]) + len(changes["added"]) == len(request["stops"])
    assert changes["added"] == changes["dropped"] == []
