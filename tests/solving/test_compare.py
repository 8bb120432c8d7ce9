"""Comparing two plans: totals side by side and every stop's move, from a hand-built pair of payloads
whose moves are known; only the caller's solutions, only solutions with payloads."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from sqlalchemy import text

from service.core.db import Database, new_id
from service.core.repository import WorkspaceScope
from service.solving.repository import SolutionRepository
from tests.conftest import AppFactory, client_for
from tests.kit.sql import SqlAdmin, scope_rls_to
from tests.planning.conftest import Caller, sign_in
from tests.solving.conftest import new_scenario

REQUEST: dict[str, Any] = {
    "depots": [{"id": "d1", "location": {"lat": 52.52, "lon": 13.40}}],
    "stops": [
        {"id": f"s{i}", "location": {"lat": 52.50 + i / 100, "lon": 13.35 + i / 100}, "demand": 1}
        for i in range(1, 7)
    ],
    "vehicle_types": [
        {"id": "van", "count": 2, "capacity": 10, "depot": "d1"},
        {"id": "truck", "count": 1, "capacity": 30, "depot": "d1"},
    ],
}


def route(vehicle_type: str, stops: list[str], vehicle: int | None = None, **extra: Any) -> dict[str, Any]:
    shaped: dict[str, Any] = {"vehicle_type": vehicle_type, "stops": stops, "distance": 100, "duration": 60}
    if vehicle is not None:
        shaped["vehicle"] = vehicle
        shaped["visits"] = [{"id": stop, "kind": "stop", "arrival": 1000 + i} for i, stop in enumerate(stops)]
    return {**shaped, **extra}


# Plan a in today's shape: numbered vehicles (listed out of order), visits, cost, reasons.
PLAN_A: dict[str, Any] = {
    "feasible": True,
    "distance": 1000,
    "duration": 500,
    "cost": 700,
    "routes": [
        route("van", ["s4"], vehicle=1),
        route("van", ["s1", "s2", "s3"], vehicle=0),
        route("truck", ["s5"], 0),
    ],
    "unassigned": [{"id": "s6", "reasons": ["no_capacity_left"]}],
}
# Plan b in the older shape: vehicles numbered by their order within a type, unassigned as ids, no cost.
PLAN_B: dict[str, Any] = {
    "feasible": True,
    "distance": 900,
    "duration": 520,
    "routes": [route("van", ["s2", "s1"]), route("van", ["s4", "s6"]), route("truck", ["s3"])],
    "unassigned": ["s5"],
}


async def insert_solution(
    db: SqlAdmin,
    user_id: uuid.UUID,
    scenario_id: str,
    payload: dict[str, Any] | None,
    *,
    status: str = "succeeded",
    request: dict[str, Any] | None = None,
) -> str:
    """A solution row written directly (as the login role) in the user's personal workspace (whose id
    is the user's), as a solve or a client would leave it."""
    solution_id = new_id()
    async with db.transaction() as session:
        await scope_rls_to(session, user_id)
        await session.execute(
            text(
                "INSERT INTO solutions (id, workspace_id, user_id, scenario_id, status, payload, request) "
                "VALUES (:id, :user_id, :user_id, :scenario_id, :status, CAST(:payload AS jsonb), CAST(:request AS jsonb))"
            ),
            {
                "id": solution_id,
                "user_id": user_id,
                "scenario_id": uuid.UUID(scenario_id),
                "status": status,
                "payload": None if payload is None else orjson.dumps(payload).decode(),
                "request": None if request is None else orjson.dumps(request).decode(),
            },
        )
    return str(solution_id)


async def test_a_known_pair_of_plans_compares_move_by_move(alice: Caller, clean_db: SqlAdmin) -> None:
    scenario_id = await new_scenario(alice, REQUEST)
    a = await insert_solution(clean_db, alice.user_id, scenario_id, PLAN_A)
    b = await insert_solution(clean_db, alice.user_id, scenario_id, PLAN_B)

    response = await alice.call("GET", f"/solutions/{a}/compare/{b}")

    assert response.status_code == 200, response.text
    assert response.json() == {
        "kpis": {
            "distance": [1000, 900, -100],
            "duration": [500, 520, 20],
            "cost": [700, None, None],
            "routes": [3, 3, 0],
            "unassigned": [1, 1, 0],
        },
        "stops": {
            "moved": [
                {
                    "id": "s2",
                    "from": {"vehicle_type": "van", "vehicle": 0, "position": 1},
                    "to": {"vehicle_type": "van", "vehicle": 0, "position": 0},
                },
                {
                    "id": "s1",
                    "from": {"vehicle_type": "van", "vehicle": 0, "position": 0},
                    "to": {"vehicle_type": "van", "vehicle": 0, "position": 1},
                },
                {
                    "id": "s3",
                    "from": {"vehicle_type": "van", "vehicle": 0, "position": 2},
                    "to": {"vehicle_type": "truck", "vehicle": 0, "position": 0},
                },
            ],
            "added": ["s6"],
            "dropped": ["s5"],
            "unchanged": 1,
        },
        "shipments": {"moved": [], "added": [], "dropped": [], "unchanged": 0},
    }


async def test_the_other_way_round_every_move_reverses(alice: Caller, clean_db: SqlAdmin) -> None:
    scenario_id = await new_scenario(alice, REQUEST)
    a = await insert_solution(clean_db, alice.user_id, scenario_id, PLAN_A)
    b = await insert_solution(clean_db, alice.user_id, scenario_id, PLAN_B)
    forward = (await alice.call("GET", f"/solutions/{a}/compare/{b}")).json()
    backward = (await alice.call("GET", f"/solutions/{b}/compare/{a}")).json()
    assert backward["stops"]["added"] == forward["stops"]["dropped"]
    assert backward["stops"]["dropped"] == forward["stops"]["added"]
    assert {(m["id"], str(m["from"]), str(m["to"])) for m in backward["stops"]["moved"]} == {
        (m["id"], str(m["to"]), str(m["from"])) for m in forward["stops"]["moved"]
    }
    assert backward["kpis"]["distance"] == [900, 1000, 100]


async def test_a_plan_compared_with_itself_is_unchanged(alice: Caller, clean_db: SqlAdmin) -> None:
    scenario_id = await new_scenario(alice, REQUEST)
    a = await insert_solution(clean_db, alice.user_id, scenario_id, PLAN_A)
    body = (await alice.call("GET", f"/solutions/{a}/compare/{a}")).json()
    assert body["stops"] == {"moved": [], "added": [], "dropped": [], "unchanged": 5}
    assert body["kpis"]["cost"] == [700, 700, 0]


async def test_solutions_of_different_scenarios_compare(alice: Caller, clean_db: SqlAdmin) -> None:
    a = await insert_solution(clean_db, alice.user_id, await new_scenario(alice, REQUEST), PLAN_A)
    b = await insert_solution(clean_db, alice.user_id, await new_scenario(alice, REQUEST), PLAN_B)
    assert (await alice.call("GET", f"/solutions/{a}/compare/{b}")).status_code == 200


async def test_another_users_solution_answers_exactly_as_a_missing_one(
    alice: Caller, bob: Caller, clean_db: SqlAdmin
) -> None:
    mine = await insert_solution(clean_db, alice.user_id, await new_scenario(alice, REQUEST), PLAN_A)
    theirs = await insert_solution(clean_db, bob.user_id, await new_scenario(bob, REQUEST), PLAN_B)
    missing = str(uuid.uuid4())
    answers = []
    for path in (
        f"/solutions/{mine}/compare/{theirs}",
        f"/solutions/{theirs}/compare/{mine}",
        f"/solutions/{mine}/compare/{missing}",
        f"/solutions/{missing}/compare/{mine}",
    ):
        response = await alice.call("GET", path)
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/problem+json"
        answers.append(response.content)
    assert len(set(answers)) == 1
    # Bob reaches his own, and neither of alice's.
    assert (await bob.call("GET", f"/solutions/{theirs}/compare/{theirs}")).status_code == 200
    assert (await bob.call("GET", f"/solutions/{theirs}/compare/{mine}")).status_code == 404


async def test_a_solution_without_a_payload_is_409(alice: Caller, clean_db: SqlAdmin) -> None:
    scenario_id = await new_scenario(alice, REQUEST)
    a = await insert_solution(clean_db, alice.user_id, scenario_id, PLAN_A)
    pending = await insert_solution(clean_db, alice.user_id, scenario_id, None, status="pending")
    failed = await insert_solution(clean_db, alice.user_id, scenario_id, None, status="failed")
    for path in (f"/solutions/{a}/compare/{pending}", f"/solutions/{failed}/compare/{a}"):
        response = await alice.call("GET", path)
        assert response.status_code == 409, response.text
        assert response.headers["content-type"] == "application/problem+json"


async def test_a_recorded_payload_that_is_no_plan_is_409_never_500(alice: Caller, clean_db: SqlAdmin) -> None:
    scenario_id = await new_scenario(alice, REQUEST)
    a = await insert_solution(clean_db, alice.user_id, scenario_id, PLAN_A)
    for payload in (
        {"anything": True},
        {"routes": "not a list"},
        {"routes": [1, "two", None]},
        {"routes": [{"vehicle_type": "van", "stops": [1, 2]}]},
        {"routes": [{"vehicle_type": "van", "vehicle": -1, "stops": []}]},
        {"routes": [], "unassigned": [{"no id": True}]},
    ):
        other = await insert_solution(clean_db, alice.user_id, scenario_id, payload)
        response = await alice.call("GET", f"/solutions/{a}/compare/{other}")
        assert response.status_code == 409, (payload, response.text)


async def test_ids_that_are_not_uuids_are_422(alice: Caller) -> None:
    response = await alice.call("GET", f"/solutions/not-an-id/compare/{uuid.uuid4()}")
    assert response.status_code == 422


async def test_a_large_pair_is_compared_in_a_worker_process(
    app_factory: AppFactory, clean_db: SqlAdmin
) -> None:
    # Past JSON_INLINE_MAX_BYTES the comparison runs in the offload processes: the same answer, and a
    # payload that is no plan is still a 409 (the error crosses the process boundary).
    async with app_factory(json_inline_max_bytes=0) as app, client_for(app) as http:
        alice = await sign_in(app, http, "alice")
        scenario_id = await new_scenario(alice, REQUEST)
        a = await insert_solution(clean_db, alice.user_id, scenario_id, PLAN_A)
        b = await insert_solution(clean_db, alice.user_id, scenario_id, PLAN_B)
        response = await alice.call("GET", f"/solutions/{a}/compare/{b}")
        assert response.status_code == 200, response.text
        assert [move["id"] for move in response.json()["stops"]["moved"]] == ["s2", "s1", "s3"]
        other = await insert_solution(clean_db, alice.user_id, scenario_id, {"routes": "none"})
        assert (await alice.call("GET", f"/solutions/{a}/compare/{other}")).status_code == 409


async def test_only_what_a_comparison_and_a_map_need_is_read(
    alice: Caller, clean_db: SqlAdmin, service_db: Database
) -> None:
    # A payload of megabytes is mostly arrivals, loads and statistics; a request mostly its matrix.
    payload = {
        **PLAN_A,
        "routes": [{**route, "arrivals": [1] * 50_000, "load": [3]} for route in PLAN_A["routes"]],
        "solver": {"name": "pyvrp", "iterations": 1},
        "notes": "x" * 100_000,
    }
    matrix = [[0] * 7 for _ in range(7)]
    request = {**REQUEST, "matrix": {"distances": matrix}, "options": {"speed_kmh": 30}}
    scenario_id = await new_scenario(alice, request)
    solution_id = uuid.UUID(await insert_solution(clean_db, alice.user_id, scenario_id, payload))
    # Alice in her personal workspace (its id is hers), as her requests are.
    scope = WorkspaceScope(service_db, alice.user_id, alice.user_id, True, SolutionRepository)
    async with scope.transaction() as repo:
        plans = await repo.plans(solution_id)
        _, routes, places = await repo.located_plan(solution_id)
    compared = orjson.loads(plans[solution_id] or b"null")
    assert set(compared) == {"distance", "duration", "cost", "unassigned", "routes"}
    assert all(
        set(route) <= {"vehicle_type", "vehicle", "stops", "visits", "distance", "duration"}
        for route in compared["routes"]
    )
    # Visits without their arrivals: where shipments are picked up is all a comparison reads of them.
    assert all(set(visit) == {"id", "kind"} for route in compared["routes"] for visit in route["visits"])
    assert len(plans[solution_id] or b"") < 2_000
    drawn = orjson.loads(routes or b"null")
    assert set(drawn) == {"routes"}
    # With visits (arrivals included), neither the stops nor the 50,000 arrivals are read again.
    assert all(route["arrivals"] is None and route["stops"] is None for route in drawn["routes"])
    assert len(routes or b"") < 2_000
    assert set(orjson.loads(places or b"null")) == {"depots", "stops", "shipments", "vehicle_types"}


async def test_shipments_compare_by_where_they_are_picked_up(alice: Caller, clean_db: SqlAdmin) -> None:
    def shipped(vehicle: int, visits: list[tuple[str, str]]) -> dict[str, Any]:
        stops = [visit for visit, kind in visits if kind == "stop"]
        return {
            "vehicle_type": "van",
            "vehicle": vehicle,
            "stops": stops,
            "visits": [{"id": visit, "kind": kind, "arrival": 0} for visit, kind in visits],
            "distance": 1,
            "duration": 1,
        }

    a = {
        "routes": [
            shipped(
                0,
                [("p1", "pickup"), ("s1", "stop"), ("p1", "delivery"), ("p3", "pickup"), ("p3", "delivery")],
            )
        ],
        "unassigned": [{"id": "p2", "reasons": ["no_capacity_left"]}],
    }
    b = {
        "routes": [
            shipped(0, [("s1", "stop"), ("p3", "pickup"), ("p3", "delivery")]),
            shipped(
                1,
                [("s2", "stop"), ("p1", "pickup"), ("p2", "pickup"), ("p1", "delivery"), ("p2", "delivery")],
            ),
        ],
        "unassigned": [],
    }
    scenario_id = await new_scenario(alice, REQUEST)
    first = await insert_solution(clean_db, alice.user_id, scenario_id, a)
    second = await insert_solution(clean_db, alice.user_id, scenario_id, b)
    body = (await alice.call("GET", f"/solutions/{first}/compare/{second}")).json()
    assert body["shipments"] == {
        "moved": [
            {
                "id": "p3",
                "from": {"vehicle_type": "van", "vehicle": 0, "position": 3},
                "to": {"vehicle_type": "van", "vehicle": 0, "position": 1},
            },
            {
                "id": "p1",
                "from": {"vehicle_type": "van", "vehicle": 0, "position": 0},
                "to": {"vehicle_type": "van", "vehicle": 1, "position": 1},
            },
        ],
        "added": ["p2"],
        "dropped": [],
        "unchanged": 0,
    }
    # Stops are placed by their index among the stops alone: s1 stays first on van 0.
    assert body["stops"] == {"moved": [], "added": ["s2"], "dropped": [], "unchanged": 1}
    assert body["kpis"]["unassigned"] == [1, 0, -1]
