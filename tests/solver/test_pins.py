"""Re-solving from a plan in the engine: pins hold, a warm start starts from its seed, and pins
that cannot hold are refused with pointers. Every payload is re-checked by the independent checker,
and every pin by reading the routes back."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import pytest

from service.solver.example import EXAMPLE_REQUEST
from service.solver.matrix import build_matrices
from service.solver.pins import Replan, parse_pins, pin_issues
from service.solver.request import parse_solve_request
from service.solver.solver import solve
from tests.kit.checker import check_solution
from tests.kit.instances import benchmark_request

TYPE = "vehicle"  # RC208's one vehicle type, 25 vehicles


def solved(
    document: dict[str, Any], time_limit_s: float, replan: Replan | None = None, *, seed: int = 1
) -> dict[str, Any]:
    request = parse_solve_request(copy.deepcopy(document), max_stops=10_000)
    outcome = solve(
        request,
        time_limit_s=time_limit_s,
        seed=seed,
        on_progress=lambda progress: None,
        should_stop=lambda: False,
        replan=replan,
    )
    assert outcome.status == "succeeded" and outcome.payload is not None, outcome
    check_solution(document, *build_matrices(request), outcome.payload)
    # A vehicle drives at most one route.
    vehicles = Counter((route["vehicle_type"], route["vehicle"]) for route in outcome.payload["routes"])
    assert max(vehicles.values()) == 1, vehicles
    return outcome.payload


def route_of(payload: dict[str, Any], vehicle_type: str, vehicle: int) -> list[str]:
    found = [
        r["stops"] for r in payload["routes"] if (r["vehicle_type"], r["vehicle"]) == (vehicle_type, vehicle)
    ]
    return found[0] if found else []


@pytest.fixture(scope="module")
def rc208() -> dict[str, Any]:
    return benchmark_request("RC208.vrp")


@pytest.fixture(scope="module")
def earlier(rc208: dict[str, Any]) -> dict[str, Any]:
    """An earlier plan of RC208 (2 s)."""
    return solved(rc208, 2)


def test_pinned_stops_prefixes_and_locked_routes_hold(rc208: dict[str, Any], earlier: dict[str, Any]) -> None:
    first, second, third = (route["stops"] for route in earlier["routes"][:3])
    # Vehicles 3, 5, 7 and 0 of the 25: none of them the vehicle that drove these stops before.
    pins = [
        {"vehicle_type": TYPE, "vehicle": 3, "prefix": first[:4]},
        {"vehicle_type": TYPE, "vehicle": 5, "locked": second},
        {"vehicle_type": TYPE, "vehicle": 7, "stop": first[6]},
        {"vehicle_type": TYPE, "vehicle": 7, "stop": third[2]},
        {"vehicle_type": TYPE, "vehicle": 0, "stop": third[5]},
        {"vehicle_type": TYPE, "vehicle": 3, "stop": third[0]},
    ]
    payload = solved(rc208, 2, Replan(parse_pins(pins)))
    assert payload["pin_conflicts"] == []
    assert route_of(payload, TYPE, 3)[:4] == first[:4]
    assert third[0] in route_of(payload, TYPE, 3)[4:]
    assert route_of(payload, TYPE, 5) == second
    assert {first[6], third[2]} <= set(route_of(payload, TYPE, 7))
    assert third[5] in route_of(payload, TYPE, 0)
    # A locked route's stops are nowhere else, and the plan is complete.
    elsewhere = [
        s for r in payload["routes"] if (r["vehicle_type"], r["vehicle"]) != (TYPE, 5) for s in r["stops"]
    ]
    assert not set(second) & set(elsewhere)
    assert payload["unassigned"] == []


def test_a_prefix_with_nothing_after_it_still_drives_home() -> None:
    # The cargo bike may carry at most 6: pinned to kreuzberg (4), it has room for nothing else
    # but neukoelln (2); its route is its prefix and what fits, and it ends at its end depot.
    pins = [{"vehicle_type": "cargo-bike", "vehicle": 0, "prefix": ["kreuzberg", "neukoelln"]}]
    payload = solved(EXAMPLE_REQUEST, 0.5, Replan(parse_pins(pins)))
    assert route_of(payload, "cargo-bike", 0) == ["kreuzberg", "neukoelln"]
    assert payload["pin_conflicts"] == []


def test_a_warm_start_begins_at_its_seed_and_never_ends_worse(
    rc208: dict[str, Any], earlier: dict[str, Any]
) -> None:
    seed = earlier
    warm = solved(rc208, 1, Replan([], seed["routes"]), seed=7)
    # The first incumbent is the seed itself, distance for distance.
    assert warm["solver"]["initial_distance"] == seed["distance"]
    assert warm["distance"] <= seed["distance"]


def test_a_warm_start_drops_stops_that_are_gone_and_serves_new_ones(
    rc208: dict[str, Any], earlier: dict[str, Any]
) -> None:
    changed = copy.deepcopy(rc208)
    gone = {stop["id"] for stop in changed["stops"][:5]}
    # Five stops gone, three new ones (copies of existing places under new ids); the matrix follows.
    kept = list(range(5, len(rc208["stops"])))
    new = [{**copy.deepcopy(rc208["stops"][i]), "id": f"new-{i}"} for i in kept[:3]]
    changed["stops"] = [rc208["stops"][i] for i in kept] + new
    places = [0] + [1 + i for i in kept + kept[:3]]
    for name, rows in rc208["matrix"].items():
        changed["matrix"][name] = [[rows[a][b] for b in places] for a in places]
    payload = solved(changed, 1, Replan([], earlier["routes"]))
    served = {stop for route in payload["routes"] for stop in route["stops"]}
    assert not gone & served
    reasons = {entry["id"]: entry["reasons"] for entry in payload["unassigned"]}
    for stop in new:
        assert stop["id"] in served or reasons[stop["id"]]


def test_earlier_routes_of_vehicles_now_pinned_elsewhere_seed_only_what_fits(
    rc208: dict[str, Any], earlier: dict[str, Any]
) -> None:
    # The earlier route of vehicle 0 is now locked on vehicle 1 and vehicle 0 gets one of its stops:
    # the seed keeps what it can, the solver places the rest, every pin holds.
    first = earlier["routes"][0]["stops"]
    pins = [
        {"vehicle_type": TYPE, "vehicle": 1, "locked": first[:-1]},
        {"vehicle_type": TYPE, "vehicle": 0, "stop": first[-1]},
    ]
    payload = solved(rc208, 1, Replan(parse_pins(pins), earlier["routes"]))
    assert route_of(payload, TYPE, 1) == first[:-1]
    assert first[-1] in route_of(payload, TYPE, 0)
    assert payload["pin_conflicts"] == []


def test_a_warm_start_from_any_json_solves_cold() -> None:
    junk: list[Any] = [
        1,
        "x",
        {"vehicle_type": 3},
        {"vehicle_type": "van", "stops": "kreuzberg"},
        {"vehicle_type": "nope"},
    ]
    payload = solved(EXAMPLE_REQUEST, 0.5, Replan([], junk))
    assert payload["feasible"]


# -- pins that cannot hold ----------------------------------------------------------------------


def issues(pins: list[dict[str, Any]], document: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    request = parse_solve_request(copy.deepcopy(document or EXAMPLE_REQUEST), max_stops=100)
    found = pin_issues(request, parse_pins(pins), lambda: build_matrices(request), max_errors=50)
    return [(issue["pointer"], issue["type"]) for issue in found]


def test_pins_that_fit_have_no_issues() -> None:
    pins = [
        {"stop": "wedding", "vehicle_type": "van", "vehicle": 1},
        {"vehicle_type": "van", "vehicle": 0, "prefix": ["kreuzberg", "tempelhof"]},
        {"vehicle_type": "cargo-bike", "vehicle": 0, "locked": ["neukoelln"]},
    ]
    assert issues(pins) == []


@pytest.mark.parametrize(
    ("pins", "expected"),
    [
        (
            [
                {"stop": "wedding", "vehicle_type": "van", "vehicle": 0},
                {"stop": "wedding", "vehicle_type": "van", "vehicle": 1},
            ],
            [("/pins/1/stop", "stop_pinned_twice")],
        ),
        (
            [
                {"vehicle_type": "van", "vehicle": 0, "prefix": ["kreuzberg", "wedding"]},
                {"vehicle_type": "van", "vehicle": 1, "locked": ["neukoelln", "wedding"]},
            ],
            [("/pins/1/locked/1", "stop_pinned_twice")],
        ),
        (
            [{"vehicle_type": "van", "vehicle": 0, "prefix": ["wedding", "wedding"]}],
            [("/pins/0/prefix/1", "stop_pinned_twice")],
        ),
        ([{"stop": "nowhere", "vehicle_type": "van", "vehicle": 0}], [("/pins/0/stop", "unknown_stop")]),
        (
            [{"vehicle_type": "van", "vehicle": 0, "prefix": ["wedding", "x"]}],
            [("/pins/0/prefix/1", "unknown_stop")],
        ),
        (
            [{"stop": "wedding", "vehicle_type": "truck", "vehicle": 0}],
            [("/pins/0/vehicle_type", "unknown_vehicle_type")],
        ),
        (
            [{"stop": "wedding", "vehicle_type": "van", "vehicle": 2}],
            [("/pins/0/vehicle", "unknown_vehicle")],
        ),
        (
            [
                {"vehicle_type": "van", "vehicle": 0, "prefix": ["wedding"]},
                {"vehicle_type": "van", "vehicle": 0, "locked": ["kreuzberg"]},
            ],
            [("/pins/1", "vehicle_pinned_twice")],
        ),
        (
            [
                {"vehicle_type": "van", "vehicle": 0, "locked": ["wedding"]},
                {"stop": "kreuzberg", "vehicle_type": "van", "vehicle": 0},
            ],
            [("/pins/1/stop", "pin_conflict")],
        ),
        # The bike carries 6: kreuzberg (4) and neukoelln (2) fit, tempelhof (5) does not.
        (
            [{"vehicle_type": "cargo-bike", "vehicle": 0, "prefix": ["kreuzberg", "neukoelln", "tempelhof"]}],
            [("/pins/0/prefix/2", "pin_capacity")],
        ),
        ([{"stop": "charlottenburg", "vehicle_type": "cargo-bike", "vehicle": 0}], []),
        ([{"stop": "tempelhof", "vehicle_type": "cargo-bike", "vehicle": 0}], []),
        # Afternoon then morning: the morning window has closed by the second visit.
        (
            [{"vehicle_type": "van", "vehicle": 1, "locked": ["charlottenburg", "kreuzberg"]}],
            [("/pins/0/locked/1", "pin_time_window")],
        ),
    ],
)
def test_pins_that_cannot_hold_are_pointed_at(
    pins: list[dict[str, Any]], expected: list[tuple[str, str]]
) -> None:
    assert issues(pins) == expected


def test_a_pinned_route_that_cannot_end_in_its_shift_is_pointed_at() -> None:
    document = copy.deepcopy(EXAMPLE_REQUEST)
    # The bike's shift ends at 16:00; a long service at charlottenburg (from 12:00) ends after it.
    document["stops"][2]["service_duration"] = 4 * 3600
    pins = [{"vehicle_type": "cargo-bike", "vehicle": 0, "prefix": ["charlottenburg"]}]
    assert issues(pins, document) == [("/pins/0/prefix", "pin_shift")]


@pytest.mark.parametrize("limit", ["max_distance", "max_duration"])
def test_a_pinned_route_over_its_route_limit_is_pointed_at(limit: str) -> None:
    document = copy.deepcopy(EXAMPLE_REQUEST)
    bike = next(v for v in document["vehicle_types"] if v["id"] == "cargo-bike")
    bike[limit] = 1  # one metre, one second: no visit and way home fits
    pins = [{"vehicle_type": "cargo-bike", "vehicle": 0, "prefix": ["charlottenburg"]}]
    assert issues(pins, document) == [("/pins/0/prefix", "pin_route_limit")]
    assert issues([{"stop": "charlottenburg", "vehicle_type": "van", "vehicle": 0}], document) == []


def test_a_pin_names_exactly_one_of_stop_prefix_locked() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        parse_pins([{"vehicle_type": "van", "vehicle": 0, "stop": "wedding", "prefix": ["kreuzberg"]}])
    with pytest.raises(ValueError, match="exactly one"):
        parse_pins([{"vehicle_type": "van", "vehicle": 0}])


# Penalties hit PyVRP's bound when no feasible solution exists; that is the point here.
@pytest.mark.filterwarnings("ignore::pyvrp.exceptions.PenaltyBoundWarning")
def test_pins_that_cannot_all_hold_are_reported_never_hidden() -> None:
    # Each pin fits alone, together they do not: the bike carries 6, kreuzberg is 4 and tempelhof 5.
    pins = [
        {"stop": "kreuzberg", "vehicle_type": "cargo-bike", "vehicle": 0},
        {"stop": "tempelhof", "vehicle_type": "cargo-bike", "vehicle": 0},
    ]
    assert issues(pins) == []
    request = parse_solve_request(copy.deepcopy(EXAMPLE_REQUEST), max_stops=100)
    outcome = solve(
        request,
        time_limit_s=0.5,
        seed=1,
        on_progress=lambda progress: None,
        should_stop=lambda: False,
        replan=Replan(parse_pins(pins)),
    )
    assert outcome.payload is not None
    payload = outcome.payload
    assert payload["feasible"] is False
    bike = [r for r in payload["routes"] if r["vehicle_type"] == "cargo-bike"]
    overloaded = bool(bike) and bike[0]["load"][0] > 6
    assert payload["pin_conflicts"] or overloaded, payload
    reasons = {entry["id"]: entry["reasons"] for entry in payload["unassigned"]}
    for stop in payload["pin_conflicts"]:
        assert stop not in route_of(payload, "cargo-bike", 0)
        # Left off every route, the stop says its pin is why.
        assert reasons.get(stop, ["pin_conflict"]) == ["pin_conflict"], payload["unassigned"]


def test_a_warm_start_keeps_each_routes_vehicle_number(
    rc208: dict[str, Any], earlier: dict[str, Any]
) -> None:
    # The earlier plan drove vehicles 10, 11, ...: a re-solve names each route after the earlier
    # vehicle whose stops it shares most, not 0, 1, ... in the solver's order.
    renumbered = [{**route, "vehicle": 10 + i} for i, route in enumerate(earlier["routes"])]
    payload = solved(rc208, 1, Replan([], renumbered))
    was = {stop: route["vehicle"] for route in renumbered for stop in route["stops"]}
    for route in payload["routes"]:
        shared = Counter(was[stop] for stop in route["stops"])
        if route["vehicle"] >= 10:
            assert shared[route["vehicle"]] > 0, (route["vehicle"], shared)
    assert sum(route["vehicle"] >= 10 for route in payload["routes"]) >= len(renumbered) - 1


def test_a_pinned_plan_re_solved_with_its_pins_starts_from_itself(
    rc208: dict[str, Any], earlier: dict[str, Any]
) -> None:
    first, second = (route["stops"] for route in earlier["routes"][:2])
    pins = parse_pins(
        [
            {"vehicle_type": TYPE, "vehicle": 2, "prefix": first[:5]},
            {"vehicle_type": TYPE, "vehicle": 8, "locked": second},
            {"vehicle_type": TYPE, "vehicle": 2, "stop": first[7]},
        ]
    )
    pinned = solved(rc208, 1, Replan(pins))
    again = solved(rc208, 1, Replan(pins, pinned["routes"]), seed=5)
    assert again["solver"]["initial_distance"] == pinned["distance"]
    assert again["distance"] <= pinned["distance"]
    assert route_of(again, TYPE, 2)[:5] == first[:5] and first[7] in route_of(again, TYPE, 2)
    assert route_of(again, TYPE, 8) == second


def test_a_prefix_on_a_vehicle_that_reloads_fills_only_its_first_trip() -> None:
    # One van of capacity 10 that may reload at its depot 3 times; six stops of 5. The prefix (one
    # stop) leaves room for one more on the first trip, and every later trip has the full 10: all
    # six fit in three trips. Had the prefix's load been taken from the capacity for the whole
    # route, each later trip would carry one stop and the reloads would not suffice.
    document = {
        "depots": [{"id": "depot", "location": {"x": 0, "y": 0}}],
        "stops": [{"id": f"s{i}", "location": {"x": 100 + 10 * i, "y": 0}, "demand": 5} for i in range(6)],
        "vehicle_types": [
            {
                "id": "van",
                "count": 1,
                "capacity": 10,
                "depot": "depot",
                "reload_depots": ["depot"],
                "max_reloads": 2,
            }
        ],
    }
    pins = parse_pins([{"vehicle_type": "van", "vehicle": 0, "prefix": ["s3"]}])
    payload = solved(document, 1, Replan(pins))
    assert payload["feasible"] and payload["unassigned"] == [] and payload["pin_conflicts"] == []
    (route,) = payload["routes"]
    assert route["stops"][0] == "s3" and route["trips"] == 3


def test_a_pinned_stop_left_out_before_the_solve_is_a_pin_conflict_not_a_failure() -> None:
    # The caller rules the pinned stop out (the hook the checks before the solve share): the solve
    # still succeeds, the stop is unassigned because of its pin, and the payload names the pin.
    request = parse_solve_request(copy.deepcopy(EXAMPLE_REQUEST), max_stops=100)
    pins = parse_pins(
        [
            {"stop": "wedding", "vehicle_type": "van", "vehicle": 1},
            {"vehicle_type": "van", "vehicle": 0, "prefix": ["kreuzberg", "tempelhof"]},
        ]
    )
    outcome = solve(
        request,
        time_limit_s=0.5,
        seed=1,
        on_progress=lambda progress: None,
        should_stop=lambda: False,
        pin_conflicts=["wedding", "tempelhof"],
        replan=Replan(pins),
    )
    assert outcome.status == "succeeded" and outcome.payload is not None, outcome
    payload = outcome.payload
    check_solution(EXAMPLE_REQUEST, *build_matrices(request), payload)
    reasons = {entry["id"]: entry["reasons"] for entry in payload["unassigned"]}
    assert reasons["wedding"] == ["pin_conflict"] and reasons["tempelhof"] == ["pin_conflict"]
    assert set(payload["pin_conflicts"]) == {"wedding", "tempelhof"}
    # What is left of the prefix still holds.
    assert route_of(payload, "van", 0)[:1] == ["kreuzberg"]


def test_a_warm_start_seeds_shipments_and_reloads_from_the_earlier_visits() -> None:
    # Stops of 5 on one van of 10 that reloads, and two parcels: the earlier plan serves all with
    # reloads and both parcels; re-solved from it, its first incumbent is that plan itself.
    document = {
        "depots": [{"id": "depot", "location": {"x": 0, "y": 0}}],
        "stops": [{"id": f"s{i}", "location": {"x": 100 + 10 * i, "y": 0}, "demand": 5} for i in range(6)],
        "shipments": [
            {
                "id": f"p{i}",
                "amount": 2,
                "pickup": {"location": {"x": 50, "y": 10 * i}},
                "delivery": {"location": {"x": 150, "y": 10 * i}},
            }
            for i in range(2)
        ],
        "vehicle_types": [
            {"id": "van", "count": 1, "capacity": 10, "depot": "depot", "reload_depots": ["depot"]}
        ],
    }
    earlier = solved(document, 1)
    assert earlier["feasible"] and earlier["unassigned"] == []
    kinds = {visit["kind"] for visit in earlier["routes"][0]["visits"]}
    assert {"pickup", "delivery", "reload"} <= kinds, kinds
    again = solved(document, 0.5, Replan([], earlier["routes"]))
    assert again["solver"]["initial_distance"] == earlier["distance"]
    assert again["distance"] <= earlier["distance"] and again["unassigned"] == []


def test_a_pinned_stop_no_vehicle_can_serve_keeps_its_reason_beside_pin_conflict() -> None:
    # Pins are checked when a solve is queued; one that reaches the engine anyway (here: a stop
    # heavier than every vehicle) does not fail the solve: the stop says both why.
    document = copy.deepcopy(EXAMPLE_REQUEST)
    document["stops"][0]["demand"] = 999
    heavy = document["stops"][0]["id"]
    request = parse_solve_request(document, max_stops=100)
    outcome = solve(
        request,
        time_limit_s=0.5,
        seed=1,
        on_progress=lambda progress: None,
        should_stop=lambda: False,
        replan=Replan(parse_pins([{"stop": heavy, "vehicle_type": "van", "vehicle": 0}])),
    )
    assert outcome.status == "succeeded" and outcome.payload is not None, outcome
    reasons = {entry["id"]: entry["reasons"] for entry in outcome.payload["unassigned"]}
    assert reasons[heavy] == ["demand_exceeds_capacity", "pin_conflict"]
    assert outcome.payload["pin_conflicts"] == [heavy]
