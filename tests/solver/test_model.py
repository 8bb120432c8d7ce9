"""The richer model with real PyVRP: shipments, reloads, route limits, costs and the objective.

Every payload also passes the independent checker (solve_checked), which re-walks each route:
pickups before deliveries on one route, the load along it trip by trip, limits, times and cost.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.solver.conftest import SolveChecked


def _depot(did: str = "depot", x: float = 0, y: float = 0) -> dict[str, Any]:
    return {"id": did, "location": {"x": x, "y": y}}


def _stop(sid: str, x: float, y: float = 0, demand: int | list[int] = 1, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "location": {"x": x, "y": y}, "demand": demand, **extra}


def _shipment(
    sid: str, pickup: tuple[float, float], delivery: tuple[float, float], amount: int
) -> dict[str, Any]:
    return {
        "id": sid,
        "amount": amount,
        "pickup": {"location": {"x": pickup[0], "y": pickup[1]}, "service_duration": 5},
        "delivery": {"location": {"x": delivery[0], "y": delivery[1]}, "service_duration": 5},
    }


def test_shipments_are_picked_up_before_delivery_on_one_route_within_capacity(
    solve_checked: SolveChecked,
) -> None:
    # Pickups in the west, deliveries in the east, interleaved so that carrying everything at once
    # would exceed the capacity of 10: a route must deliver some before picking up others.
    shipments = [_shipment(f"p{i}", (100 + 10 * i, 50), (900 - 10 * i, 50), 4) for i in range(6)]
    document = {
        "depots": [_depot()],
        "stops": [_stop("s1", 500, 0, demand=3)],
        "shipments": shipments,
        "vehicle_types": [{"id": "van", "count": 3, "capacity": 10, "depot": "depot"}],
    }
    payload = solve_checked(document, time_limit_s=1).payload
    assert payload is not None and payload["unassigned"] == []
    steps: dict[str, list[tuple[int, int, str]]] = {}
    for number, route in enumerate(payload["routes"]):
        for position, visit in enumerate(route["visits"]):
            if visit["kind"] in ("pickup", "delivery"):
                steps.setdefault(visit["id"], []).append((number, position, visit["kind"]))
    assert set(steps) == {shipment["id"] for shipment in shipments}
    for item, ((route_a, at_a, kind_a), (route_b, at_b, kind_b)) in steps.items():
        assert route_a == route_b, f"{item} changes vehicle"
        assert (kind_a, kind_b) == ("pickup", "delivery") and at_a < at_b, f"{item} delivered before pickup"
    for route in payload["routes"]:
        on_board = 3 if "s1" in route["stops"] else 0
        for visit in route["visits"]:
            on_board += {"stop": -3, "pickup": 4, "delivery": -4}[visit["kind"]]
            assert 0 <= on_board <= 10


def test_a_route_with_reloads_delivers_more_than_its_capacity_trip_by_trip(
    solve_checked: SolveChecked,
) -> None:
    stops = [_stop(f"s{i}", 100 + 10 * i, demand=5) for i in range(6)]
    document = {
        "depots": [_depot()],
        "stops": stops,
        "vehicle_types": [
            {
                "id": "van",
                "count": 1,
                "capacity": 10,
                "depot": "depot",
                "reload_depots": ["depot"],
                "max_reloads": 3,
            }
        ],
    }
    payload = solve_checked(document, time_limit_s=1).payload
    assert payload is not None and payload["unassigned"] == []
    (route,) = payload["routes"]
    assert route["load"] == [30] and route["trips"] >= 3
    trip_load = 0
    for visit in route["visits"]:
        if visit["kind"] == "reload":
            trip_load = 0
            continue
        trip_load += 5
        assert trip_load <= 10, "a trip carries more than the capacity"
    assert [visit["id"] for visit in route["visits"] if visit["kind"] == "reload"] == ["depot"] * (
        route["trips"] - 1
    )

    # Without reloads the one van has room for two stops: made optional, and each well worth its
    # detour, four are left out for lack of room.
    del document["vehicle_types"][0]["reload_depots"], document["vehicle_types"][0]["max_reloads"]
    for stop in document["stops"]:
        stop.update(required=False, prize=10_000)
    payload = solve_checked(document, time_limit_s=1).payload
    assert payload is not None and len(payload["unassigned"]) == 4 and payload["unassigned_required"] == 0
    assert {reason for entry in payload["unassigned"] for reason in entry["reasons"]} == {"no_capacity_left"}


def test_max_distance_and_max_duration_bound_every_route(solve_checked: SolveChecked) -> None:
    stops = [_stop(f"e{i}", 100 * (i + 1)) for i in range(4)] + [
        _stop(f"w{i}", -100 * (i + 1)) for i in range(4)
    ]
    document = {
        "depots": [_depot()],
        "stops": stops,
        # One route serving both sides would drive 1,600; each limit allows one side per route.
        "vehicle_types": [{"id": "van", "count": 4, "capacity": 100, "depot": "depot", "max_distance": 900}],
    }
    payload = solve_checked(document).payload
    assert payload is not None and payload["unassigned"] == [] and len(payload["routes"]) == 2
    assert all(route["distance"] <= 900 for route in payload["routes"])

    del document["vehicle_types"][0]["max_distance"]
    document["vehicle_types"][0]["max_duration"] = 850
    for stop in document["stops"]:
        stop["service_duration"] = 10
    payload = solve_checked(document).payload
    assert payload is not None and payload["unassigned"] == [] and len(payload["routes"]) == 2
    assert all(route["duration"] <= 850 for route in payload["routes"])


def test_the_cost_objective_leaves_a_vehicle_whose_fixed_cost_is_not_worth_it(
    solve_checked: SolveChecked,
) -> None:
    # The near van drives less, the far one costs less: 100,000 to use the near one against
    # 2 per km for about 4 km with the far one.
    document = {
        "depots": [_depot("near", 1000, 0), _depot("far", 0, 0)],
        "stops": [_stop("s1", 1000, 50), _stop("s2", 1050, 0), _stop("s3", 1000, -50)],
        "vehicle_types": [
            {
                "id": "near-van",
                "count": 1,
                "capacity": 10,
                "depot": "near",
                "fixed_cost": 100_000,
                "cost_per_km": 2,
            },
            {
                "id": "far-van",
                "count": 1,
                "capacity": 10,
                "depot": "far",
                "cost_per_km": 2,
                "cost_per_hour": 36,
            },
        ],
    }
    by_distance = solve_checked(document).payload
    assert by_distance is not None
    assert [route["vehicle_type"] for route in by_distance["routes"]] == ["near-van"]
    assert by_distance["cost"] >= 100_000  # computed under either objective

    document["options"] = {"objective": "cost"}
    by_cost = solve_checked(document).payload
    assert by_cost is not None
    assert [route["vehicle_type"] for route in by_cost["routes"]] == ["far-van"]
    (route,) = by_cost["routes"]
    assert by_cost["cost"] == round(2 * route["distance"] / 1000 + 36 * route["duration"] / 3600)
    assert by_cost["cost"] < by_distance["cost"] and by_cost["distance"] > by_distance["distance"]


def test_optional_stops_are_weighed_in_money_under_the_cost_objective(solve_checked: SolveChecked) -> None:
    document = {
        "depots": [_depot()],
        "stops": [
            _stop("near", 100),
            # 2 × 10 km at 100 per km = 2,000 for a prize of 1,500: not worth it.
            _stop("far", 100, 10_000, required=False, prize=1500),
        ],
        "vehicle_types": [{"id": "van", "count": 1, "capacity": 10, "depot": "depot", "cost_per_km": 100}],
        "options": {"objective": "cost"},
    }
    payload = solve_checked(document).payload
    assert payload is not None
    assert payload["unassigned"] == [{"id": "far", "reasons": ["not_worth_serving"]}]
    document["stops"][1]["prize"] = 2500
    payload = solve_checked(document).payload
    assert payload is not None and payload["unassigned"] == []


def test_a_request_without_the_new_fields_solves_as_before(solve_checked: SolveChecked) -> None:
    # The same optimum, with the new fields absent or at their defaults (costs ignored under the
    # distance objective): the distance objective is what it always was.
    document = {
        "depots": [_depot()],
        "stops": [_stop("a", 10, 10), _stop("b", 20, 0), _stop("c", 10, -10), _stop("d", -30, 0)],
        "vehicle_types": [{"id": "van", "count": 2, "capacity": 3, "depot": "depot"}],
    }
    plain = solve_checked(document).payload
    explicit = copy.deepcopy(document)
    explicit["vehicle_types"][0].update(fixed_cost=10_000, cost_per_km=5, cost_per_hour=7)
    explicit["options"] = {"objective": "distance"}
    explicit["shipments"] = []
    again = solve_checked(explicit).payload
    assert plain is not None and again is not None
    assert sorted(route["stops"] for route in plain["routes"]) == sorted(
        route["stops"] for route in again["routes"]
    )
    # a, b and c in one loop (four legs of 14), d out and back (60).
    assert plain["distance"] == again["distance"] == 4 * 14 + 60
    assert plain["cost"] == 0 and plain["unassigned_required"] == 0
    assert all(
        route["visits"]
        == [
            {"id": s, "kind": "stop", "arrival": a}
            for s, a in zip(route["stops"], route["arrivals"], strict=True)
        ]
        for route in plain["routes"]
    )
