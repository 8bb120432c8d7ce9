"""solve() with real PyVRP: benchmarks, the modelling features, progress, cancellation, refusals."""

from __future__ import annotations

import copy
import itertools
import time
from typing import Any

import pytest

from service.solver.example import EXAMPLE_RICHER_REQUEST
from service.solver.outcome import CANCELLED_EARLY, MAX_SEED, Progress
from service.solver.request import EXAMPLE_REQUEST, parse_solve_request
from service.solver.solver import PROGRESS_INTERVAL_S, solve
from tests.kit.instances import DATA
from tests.kit.vrplib_io import request_from_vrplib
from tests.solver.conftest import SolveChecked


def _planar(
    stops: list[dict[str, Any]],
    vehicle_types: list[dict[str, Any]],
    depots: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "depots": depots or [{"id": "depot", "location": {"x": 0, "y": 0}}],
        "stops": stops,
        "vehicle_types": vehicle_types,
    }


def _stop(sid: str, x: float, y: float = 0, demand: int | list[int] = 1, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "location": {"x": x, "y": y}, "demand": demand, **extra}


def _served_by(payload: dict[str, Any]) -> dict[str, str]:
    return {stop: route["vehicle_type"] for route in payload["routes"] for stop in route["stops"]}


def test_e_n22_k4_within_one_percent_of_the_best_known(solve_checked: SolveChecked) -> None:
    document = request_from_vrplib(DATA / "E-n22-k4.vrp", round_func="round")
    payload = solve_checked(document, time_limit_s=2).payload
    assert payload is not None and payload["distance"] <= 375 * 1.01


def test_rc208_feasible_within_three_percent_of_the_best_known(solve_checked: SolveChecked) -> None:
    document = request_from_vrplib(DATA / "RC208.vrp", round_func="dimacs")
    payload = solve_checked(document, time_limit_s=5).payload
    assert payload is not None and payload["distance"] <= 7761 * 1.03
    assert payload["solver"]["time_limit_s"] == 5 and payload["solver"]["runtime_s"] <= 5.5


def test_every_load_dimension_binds(solve_checked: SolveChecked) -> None:
    # On a line, one route would be shortest; the second dimension allows two stops per vehicle.
    stops = [_stop(f"s{i}", 10 + i, demand=[1, 5]) for i in range(6)]
    payload = solve_checked(
        _planar(stops, [{"id": "v", "count": 3, "capacity": [10, 10], "depot": "depot"}])
    ).payload
    assert payload is not None
    assert sorted(route["load"] for route in payload["routes"]) == [[2, 10]] * 3


def test_two_vehicle_types_from_two_depots(solve_checked: SolveChecked) -> None:
    depots = [
        {"id": "west", "location": {"x": 0, "y": 0}},
        {"id": "east", "location": {"x": 1000, "y": 0}},
    ]
    stops = [_stop("w1", 10), _stop("w2", 20, 5), _stop("e1", 990), _stop("e2", 980, 5)]
    vehicle_types = [
        {"id": "west-van", "count": 1, "capacity": 2, "depot": "west"},
        # Starts in the east and returns west: its route's distance includes the way home.
        {"id": "east-van", "count": 1, "capacity": 2, "depot": "east", "end_depot": "west"},
    ]
    payload = solve_checked(_planar(stops, vehicle_types, depots)).payload
    assert payload is not None
    assert _served_by(payload) == {"w1": "west-van", "w2": "west-van", "e1": "east-van", "e2": "east-van"}
    east = next(route for route in payload["routes"] if route["vehicle_type"] == "east-van")
    assert east["distance"] >= 1000


def test_shifts_and_depot_hours_decide_who_serves_what(solve_checked: SolveChecked) -> None:
    depots = [{"id": "depot", "location": {"x": 0, "y": 0}, "time_window": [10, 900]}]
    stops = [
        _stop("morning", 10, time_window=[0, 60], service_duration=5),
        _stop("evening", 12, time_window=[520, 560], service_duration=5),
    ]
    vehicle_types = [
        {"id": "early", "count": 1, "capacity": 5, "depot": "depot", "shift": [0, 100]},
        {"id": "late", "count": 1, "capacity": 5, "depot": "depot", "shift": [500, 700]},
    ]
    payload = solve_checked(_planar(stops, vehicle_types, depots)).payload
    assert payload is not None
    assert _served_by(payload) == {"morning": "early", "evening": "late"}
    early = next(route for route in payload["routes"] if route["vehicle_type"] == "early")
    assert early["start"] >= 10  # the depot opens after the shift begins


def test_a_required_stop_no_vehicle_can_serve_is_unassigned_and_the_rest_stays_feasible(
    solve_checked: SolveChecked,
) -> None:
    stops = [
        _stop("ok", 10),
        _stop("too-heavy", 12, demand=50),
        _stop("too-late", 15, time_window=[0, 5]),  # 15 away, the vehicle cannot leave before 0
        _stop("ok-too", 20),
    ]
    vehicle_types = [
        {"id": "small", "count": 2, "capacity": 10, "depot": "depot"},
        {"id": "big-but-late", "count": 1, "capacity": 100, "depot": "depot", "shift": [100, 1000]},
    ]
    payload = solve_checked(_planar(stops, vehicle_types)).payload
    assert payload is not None and payload["feasible"] is True
    # Too late for the small vans, outside the big one's shift: no single check explains it.
    assert payload["unassigned"] == [
        {"id": "too-late", "reasons": ["outside_every_shift", "time_window_unreachable"]}
    ]
    assert payload["unassigned_required"] == 1
    assert _served_by(payload)["too-heavy"] == "big-but-late"

    stops[1]["demand"] = 500
    payload = solve_checked(_planar(stops, vehicle_types)).payload
    assert payload is not None and payload["feasible"] is True
    assert payload["unassigned"] == [
        {"id": "too-heavy", "reasons": ["demand_exceeds_capacity"]},
        {"id": "too-late", "reasons": ["outside_every_shift", "time_window_unreachable"]},
    ]
    assert payload["unassigned_required"] == 2


def test_optional_stops_are_served_only_when_their_prize_pays(solve_checked: SolveChecked) -> None:
    stops = [
        _stop("near", 10),
        _stop("far-cheap", 5000, required=False, prize=100),
        _stop("near-valuable", 12, 3, required=False, prize=100),
    ]
    payload = solve_checked(
        _planar(stops, [{"id": "v", "count": 2, "capacity": 10, "depot": "depot"}])
    ).payload
    assert payload is not None
    assert payload["unassigned"] == [{"id": "far-cheap", "reasons": ["not_worth_serving"]}]
    assert payload["unassigned_required"] == 0
    assert set(_served_by(payload)) == {"near", "near-valuable"}


def test_the_example_request_solves_feasibly(solve_checked: SolveChecked) -> None:
    payload = solve_checked(EXAMPLE_REQUEST).payload
    assert payload is not None and payload["routes"]


def test_the_richer_example_request_solves_feasibly_and_completely(solve_checked: SolveChecked) -> None:
    payload = solve_checked(EXAMPLE_RICHER_REQUEST).payload
    assert payload is not None and payload["unassigned_required"] == 0
    kinds = {visit["kind"] for route in payload["routes"] for visit in route["visits"]}
    assert {"pickup", "delivery"} <= kinds
    assert payload["cost"] >= 5000  # at least one van's fixed cost


# PyVRP warns that its penalties hit their bound, which is exactly the situation under test.
@pytest.mark.filterwarnings("ignore::pyvrp.exceptions.PenaltyBoundWarning")
def test_too_little_fleet_is_reported_infeasible_not_hidden() -> None:
    stops = [_stop(f"s{i}", 10 + i, demand=6) for i in range(3)]
    request = parse_solve_request(
        _planar(stops, [{"id": "v", "count": 1, "capacity": 10, "depot": "depot"}]), max_stops=10
    )
    outcome = solve(request, time_limit_s=0.3, seed=1, on_progress=lambda p: None, should_stop=lambda: False)
    assert outcome.status == "succeeded" and outcome.payload is not None
    assert outcome.payload["feasible"] is False


def test_progress_is_reported_steadily_and_once_at_the_end() -> None:
    request = parse_solve_request(request_from_vrplib(DATA / "RC208.vrp", round_func="dimacs"), max_stops=200)
    reports: list[tuple[float, Progress]] = []
    outcome = solve(
        request,
        time_limit_s=1.0,
        seed=3,
        on_progress=lambda progress: reports.append((time.perf_counter(), progress)),
        should_stop=lambda: False,
    )
    assert outcome.payload is not None
    assert len(reports) >= 3
    # The final report follows the last periodic one at any distance; the others are spaced.
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(reports[:-1])]
    assert min(gaps) >= PROGRESS_INTERVAL_S * 0.9
    progresses = [progress for _, progress in reports]
    assert all(p.feasible and p.best_distance is not None for p in progresses)
    assert [p.iterations for p in progresses] == sorted(p.iterations for p in progresses)
    distances = [p.best_distance for p in progresses]
    assert distances == sorted(distances, reverse=True)  # type: ignore[type-var]
    final = progresses[-1]
    assert final.best_distance == outcome.payload["distance"]
    assert final.iterations == outcome.payload["solver"]["iterations"]


def test_should_stop_ends_the_search_with_the_best_so_far() -> None:
    request = parse_solve_request(request_from_vrplib(DATA / "RC208.vrp", round_func="dimacs"), max_stops=200)
    reports: list[Progress] = []
    asked_after_stop = 0
    stop = False

    def should_stop() -> bool:
        nonlocal stop, asked_after_stop
        asked_after_stop += stop
        stop = stop or bool(reports)
        return stop

    outcome = solve(request, time_limit_s=30, seed=1, on_progress=reports.append, should_stop=should_stop)
    # The first "stop" ends the search: it is never asked again, and nothing runs on to the limit.
    assert stop and asked_after_stop == 0
    assert outcome.status == "cancelled" and outcome.payload is not None
    assert outcome.payload["solver"]["runtime_s"] < 30
    assert outcome.payload["feasible"] is True and len(outcome.payload["unassigned"]) == 0


def test_a_stop_before_the_search_begins_is_a_failure_without_payload() -> None:
    request = parse_solve_request(copy.deepcopy(EXAMPLE_REQUEST), max_stops=100)
    outcome = solve(request, time_limit_s=5, seed=1, on_progress=lambda p: None, should_stop=lambda: True)
    assert outcome.status == "failed" and outcome.payload is None and outcome.reason == CANCELLED_EARLY


def test_a_problem_pyvrp_refuses_is_a_short_failure() -> None:
    document = _planar(
        [_stop("s", 10)],
        [{"id": "v", "count": 1, "capacity": 5, "depot": "depot", "shift": [500, 600]}],
        [{"id": "depot", "location": {"x": 0, "y": 0}, "time_window": [0, 100]}],
    )
    outcome = solve(
        parse_solve_request(document, max_stops=10),
        time_limit_s=1,
        seed=1,
        on_progress=lambda p: None,
        should_stop=lambda: False,
    )
    assert outcome.status == "failed" and outcome.reason is not None
    assert outcome.reason.startswith("the solver refused the problem: ")
    assert "overlapping time windows" in outcome.reason
    assert "Traceback" not in outcome.reason and "\n" not in outcome.reason and len(outcome.reason) <= 200


def test_a_callback_error_propagates_to_the_caller() -> None:
    request = parse_solve_request(copy.deepcopy(EXAMPLE_REQUEST), max_stops=100)

    def broken(progress: Progress) -> None:
        raise BrokenPipeError("the reader went away")

    with pytest.raises(BrokenPipeError):
        solve(request, time_limit_s=5, seed=1, on_progress=broken, should_stop=lambda: False)


@pytest.mark.parametrize(("seed", "time_limit_s"), [(-1, 1.0), (MAX_SEED + 1, 1.0), (1, 0.0)])
def test_arguments_outside_pyvrp_range_are_refused(seed: int, time_limit_s: float) -> None:
    request = parse_solve_request(copy.deepcopy(EXAMPLE_REQUEST), max_stops=100)
    with pytest.raises(ValueError):
        solve(
            request,
            time_limit_s=time_limit_s,
            seed=seed,
            on_progress=lambda p: None,
            should_stop=lambda: False,
        )
