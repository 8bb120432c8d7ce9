"""A reason for every unassigned stop: one constructed case per code, solved with real PyVRP."""

from __future__ import annotations

from typing import Any

from service.solver.matrix import build_matrices
from service.solver.request import parse_solve_request
from service.solver.solver import solve
from tests.kit.checker import check_solution
from tests.solver.conftest import SolveChecked


def _document(stops: list[dict[str, Any]], **vehicle: Any) -> dict[str, Any]:
    return {
        "depots": [{"id": "depot", "location": {"x": 0, "y": 0}}],
        "stops": [{"id": "ok", "location": {"x": 10, "y": 0}, "demand": 1}, *stops],
        "vehicle_types": [{"id": "van", "count": 2, "capacity": 30, "depot": "depot", **vehicle}],
    }


def _stop(sid: str, x: float, demand: int = 1, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "location": {"x": x, "y": 0}, "demand": demand, **extra}


def test_a_stop_heavier_than_every_van_is_demand_exceeds_capacity(solve_checked: SolveChecked) -> None:
    payload = solve_checked(_document([_stop("heavy", 20, demand=999)])).payload
    assert payload is not None
    assert payload["unassigned"] == [{"id": "heavy", "reasons": ["demand_exceeds_capacity"]}]
    assert payload["unassigned_required"] == 1
    # PyVRP's meaning: the routes it made are feasible; the summary says a required stop is missing.
    assert payload["feasible"] is True


def test_a_window_closing_before_any_van_can_arrive_is_time_window_unreachable(
    solve_checked: SolveChecked,
) -> None:
    payload = solve_checked(_document([_stop("early", 100, time_window=[0, 50])], shift=[0, 1000])).payload
    assert payload is not None
    assert payload["unassigned"] == [{"id": "early", "reasons": ["time_window_unreachable"]}]


def test_a_window_outside_the_shifts_is_outside_every_shift(solve_checked: SolveChecked) -> None:
    payload = solve_checked(
        _document([_stop("night", 20, time_window=[2000, 3000])], shift=[0, 1000])
    ).payload
    assert payload is not None
    assert payload["unassigned"] == [{"id": "night", "reasons": ["outside_every_shift"]}]


def test_a_stop_beyond_the_route_limits_is_route_limit(solve_checked: SolveChecked) -> None:
    payload = solve_checked(_document([_stop("far", 800)], max_distance=1000)).payload
    assert payload is not None
    assert payload["unassigned"] == [{"id": "far", "reasons": ["route_limit"]}]
    payload = solve_checked(_document([_stop("long", 20, service_duration=500)], max_duration=400)).payload
    assert payload is not None
    assert payload["unassigned"] == [{"id": "long", "reasons": ["route_limit"]}]


def test_an_optional_stop_whose_prize_is_below_its_detour_is_not_worth_serving(
    solve_checked: SolveChecked,
) -> None:
    payload = solve_checked(_document([_stop("far", 5000, required=False, prize=100)])).payload
    assert payload is not None
    assert payload["unassigned"] == [{"id": "far", "reasons": ["not_worth_serving"]}]
    assert payload["unassigned_required"] == 0
    # With nothing else to serve there is no route at all: priced against an unused van.
    document = _document([_stop("far", 5000, required=False, prize=100)])
    document["stops"].pop(0)
    payload = solve_checked(document).payload
    assert payload is not None and payload["routes"] == []
    assert payload["unassigned"] == [{"id": "far", "reasons": ["not_worth_serving"]}]


def test_a_stop_worth_serving_without_room_is_no_capacity_left(solve_checked: SolveChecked) -> None:
    # Each optional stop fits a van on its own and pays well; one van has room for two of them.
    stops = [_stop(f"o{i}", 20 + i, demand=10, required=False, prize=10_000) for i in range(4)]
    document = _document(stops)
    document["vehicle_types"][0].update(count=1, capacity=21)
    payload = solve_checked(document).payload
    assert payload is not None
    assert len(payload["unassigned"]) == 2
    assert all(entry["reasons"] == ["no_capacity_left"] for entry in payload["unassigned"])


def test_stops_the_pins_rule_out_are_pin_conflict() -> None:
    document = _document([_stop("pinned-away", 20)])
    request = parse_solve_request(document, max_stops=100)
    outcome = solve(
        request,
        time_limit_s=0.5,
        seed=1,
        on_progress=lambda progress: None,
        should_stop=lambda: False,
        pin_conflicts=["pinned-away"],
    )
    assert outcome.payload is not None
    check_solution(document, *build_matrices(request), outcome.payload)
    assert outcome.payload["unassigned"] == [{"id": "pinned-away", "reasons": ["pin_conflict"]}]
    assert outcome.payload["routes"][0]["stops"] == ["ok"]


def test_a_shipment_too_large_for_every_van_is_listed_with_its_reason(solve_checked: SolveChecked) -> None:
    document = _document([])
    document["shipments"] = [
        {"id": "piano", "amount": 500, "pickup": {"location": {"x": 5, "y": 5}},
         "delivery": {"location": {"x": 9, "y": 9}}},
        {"id": "parcel", "amount": 5, "pickup": {"location": {"x": 5, "y": 5}},
         "delivery": {"location": {"x": 9, "y": 9}}},
    ]  # fmt: skip
    payload = solve_checked(document).payload
    assert payload is not None
    assert payload["unassigned"] == [{"id": "piano", "reasons": ["demand_exceeds_capacity"]}]
    assert payload["unassigned_required"] == 1
    kinds = [(visit["id"], visit["kind"]) for route in payload["routes"] for visit in route["visits"]]
    assert ("parcel", "pickup") in kinds and ("parcel", "delivery") in kinds
