"""Re-solving from a plan through the API, with a real worker and PyVRP: pins hold, the earlier plan
seeds the solve, the solution records both, and what cannot hold is a 422 with nothing queued."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from service.solver.example import EXAMPLE_REQUEST
from service.solver.matrix import build_matrices
from service.solver.request import parse_solve_request
from tests.kit.checker import check_solution
from tests.kit.instances import benchmark_request
from tests.kit.sql import SqlAdmin
from tests.kit.worker import WorkerProcess
from tests.planning.conftest import Caller
from tests.solving.conftest import new_scenario, solution, until_status
from tests.solving.test_jobs import matrices, queue


def route_of(payload: dict[str, Any], vehicle_type: str, vehicle: int) -> list[str]:
    found = [
        r["stops"] for r in payload["routes"] if (r["vehicle_type"], r["vehicle"]) == (vehicle_type, vehicle)
    ]
    return found[0] if found else []


async def solved(caller: Caller, scenario_id: str, **options: Any) -> dict[str, Any]:
    solution_id = await queue(caller, scenario_id, **options)
    done = await until_status(caller, solution_id, "succeeded", "failed", "cancelled")
    assert done["status"] == "succeeded", done
    return done


async def test_a_re_solve_keeps_its_pins_and_records_where_it_started(
    alice: Caller, worker: WorkerProcess
) -> None:
    request = benchmark_request("RC208.vrp")
    scenario_id = await new_scenario(alice, request)
    earlier = await solved(alice, scenario_id, time_limit_s=2)
    assert [r["vehicle"] for r in earlier["payload"]["routes"]] == list(
        range(len(earlier["payload"]["routes"]))
    )
    first, second = (route["stops"] for route in earlier["payload"]["routes"][:2])
    pins = [
        {"vehicle_type": "vehicle", "vehicle": 4, "prefix": first[:3]},
        {"vehicle_type": "vehicle", "vehicle": 6, "locked": second},
        {"stop": first[5], "vehicle_type": "vehicle", "vehicle": 9},
    ]
    again = await solved(alice, scenario_id, time_limit_s=2, from_solution=earlier["id"], pins=pins)
    payload = again["payload"]
    check_solution(request, *matrices(request), payload)
    assert route_of(payload, "vehicle", 4)[:3] == first[:3]
    assert route_of(payload, "vehicle", 6) == second
    assert first[5] in route_of(payload, "vehicle", 9)
    assert payload["pin_conflicts"] == []
    assert again["from_solution"] == earlier["id"]
    assert again["pins"] == pins
    assert earlier["from_solution"] is None and earlier["pins"] is None


async def test_a_warm_start_is_never_longer_and_serves_stops_added_since(
    alice: Caller, worker: WorkerProcess
) -> None:
    request = copy.deepcopy(EXAMPLE_REQUEST)
    scenario_id = await new_scenario(alice, request)
    earlier = await solved(alice, scenario_id, time_limit_s=1)
    again = await solved(alice, scenario_id, time_limit_s=1, from_solution=earlier["id"])
    assert again["payload"]["solver"]["initial_distance"] == earlier["payload"]["distance"]
    assert again["payload"]["distance"] <= earlier["payload"]["distance"]

    # A stop added to the scenario since: the earlier plan still seeds the solve (any earlier version).
    request["stops"].append(
        {"id": "mitte-new", "location": {"lat": 52.52, "lon": 13.40}, "demand": 1, "service_duration": 60}
    )
    edited = await alice.call("PATCH", f"/scenarios/{scenario_id}", {"request": request})
    assert edited.status_code == 200, edited.text
    later = await solved(alice, scenario_id, time_limit_s=1, from_solution=earlier["id"])
    served = {stop for route in later["payload"]["routes"] for stop in route["stops"]}
    reasons = {entry["id"]: entry["reasons"] for entry in later["payload"]["unassigned"]}
    assert "mitte-new" in served or reasons["mitte-new"]
    check_solution(request, *_matrices_of(request), later["payload"])


def _matrices_of(request: dict[str, Any]) -> Any:
    return build_matrices(parse_solve_request(copy.deepcopy(request), max_stops=100))


async def counts(db: SqlAdmin) -> tuple[int, int]:
    async with db.transaction() as session:
        jobs = (await session.execute(text("SELECT count(*) FROM pgqueuer"))).scalar_one()
        rows = (await session.execute(text("SELECT count(*) FROM solutions WHERE true"))).scalar_one()
    return int(jobs), int(rows)


@pytest.mark.parametrize(
    ("pins", "pointer", "kind"),
    [
        (
            [
                {"stop": "wedding", "vehicle_type": "van", "vehicle": 0},
                {"vehicle_type": "van", "vehicle": 1, "prefix": ["kreuzberg", "wedding"]},
            ],
            "/pins/1/prefix/1",
            "stop_pinned_twice",
        ),
        ([{"stop": "atlantis", "vehicle_type": "van", "vehicle": 0}], "/pins/0/stop", "unknown_stop"),
        ([{"stop": "wedding", "vehicle_type": "van", "vehicle": 2}], "/pins/0/vehicle", "unknown_vehicle"),
        (
            [{"vehicle_type": "cargo-bike", "vehicle": 0, "locked": ["kreuzberg", "neukoelln", "wedding"]}],
            "/pins/0/locked/2",
            "pin_capacity",
        ),
        (
            [{"vehicle_type": "van", "vehicle": 0, "prefix": ["charlottenburg", "tempelhof"]}],
            "/pins/0/prefix/1",
            "pin_time_window",
        ),
    ],
)
async def test_pins_that_cannot_hold_are_422_and_queue_nothing(
    alice: Caller, clean_db: SqlAdmin, pins: list[dict[str, Any]], pointer: str, kind: str
) -> None:
    scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    before = await counts(clean_db)
    response = await alice.call("POST", f"/scenarios/{scenario_id}/solve", {"pins": pins})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert (errors[0]["pointer"], errors[0]["type"]) == (pointer, kind), errors
    assert errors[0]["loc"][:2] == ["body", "pins"]
    assert await counts(clean_db) == before


async def test_a_pin_of_the_wrong_shape_is_422(alice: Caller, clean_db: SqlAdmin) -> None:
    scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    for pins in (
        [{"vehicle_type": "van", "vehicle": 0}],
        [{"vehicle_type": "van", "vehicle": -1, "stop": "wedding"}],
        [{"vehicle_type": "van", "vehicle": 0, "prefix": []}],
        [{"vehicle_type": "van", "vehicle": "0", "stop": "wedding"}],
    ):
        response = await alice.call("POST", f"/scenarios/{scenario_id}/solve", {"pins": pins})
        assert response.status_code == 422, (pins, response.text)
        assert response.json()["errors"][0]["loc"][:3] == ["body", "pins", 0]
    assert await counts(clean_db) == (0, 0)


async def test_from_solution_must_be_a_plan_of_this_scenario_readable_by_the_caller(
    alice: Caller, bob: Caller, clean_db: SqlAdmin
) -> None:
    scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    other_scenario = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST), name="other")
    plan = {"routes": [{"vehicle_type": "van", "vehicle": 0, "stops": ["wedding"]}]}

    async def recorded(scenario: str, status: str) -> str:
        body: dict[str, Any] = {"status": status, "payload": plan}
        response = await alice.call("POST", f"/scenarios/{scenario}/solutions", body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    failed = await recorded(scenario_id, "failed")
    elsewhere = await recorded(other_scenario, "succeeded")
    pending = await queue(alice, scenario_id)  # no worker here: it stays pending
    bobs = await recorded_by(bob)
    before = await counts(clean_db)
    for source, status, kind in (
        (failed, 422, "no_plan"),
        (pending, 422, "no_plan"),
        (elsewhere, 422, "other_scenario"),
        (bobs, 404, None),
        (str(uuid.uuid4()), 404, None),
    ):
        response = await alice.call("POST", f"/scenarios/{scenario_id}/solve", {"from_solution": source})
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        if kind is not None:
            error = response.json()["errors"][0]
            assert (error["pointer"], error["type"]) == ("/from_solution", kind)
    assert await counts(clean_db) == before
    # A recorded plan of this scenario is a starting point.
    usable = await recorded(scenario_id, "succeeded")
    started = await alice.call("POST", f"/scenarios/{scenario_id}/solve", {"from_solution": usable})
    assert started.status_code == 202, started.text
    assert (await solution(alice, started.json()["id"]))["from_solution"] == usable


async def recorded_by(caller: Caller) -> str:
    scenario_id = await new_scenario(caller, copy.deepcopy(EXAMPLE_REQUEST))
    body = {"status": "succeeded", "payload": {"routes": []}}
    response = await caller.call("POST", f"/scenarios/{scenario_id}/solutions", body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])
