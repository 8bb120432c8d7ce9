"""bench_solve's VROOM comparison gives VROOM the problem the solver gets: VROOM's plan, read back into
the solver's own PyVRP model, is feasible there (capacities, shifts, time windows, service durations)
and has the distance both sides compute from the matrix."""

from __future__ import annotations

import pytest
from pyvrp import Route, Solution

from scripts.bench_solve import RC208, random_cvrp
from scripts.vroomlib import Instance, Unsupported, VroomRun, run_vroom, vroom_input, vroom_routes
from service.solver.problem import build_problem
from tests.kit.vrplib_io import request_from_vrplib


def plan_in_pyvrp(instance: Instance, routes: list[tuple[str, list[str]]]) -> Solution:
    problem = build_problem(instance.request, instance.distances, instance.durations)
    # PyVRP numbers its clients apart from the depots.
    client = {instance.request.stops[i].id: j for j, i in enumerate(problem.client_stops)}
    return Solution(
        problem.data, [Route(problem.data, [client[stop] for stop in stops], 0) for _, stops in routes]
    )


@pytest.mark.parametrize(
    "document",
    [request_from_vrplib(RC208, round_func="dimacs"), random_cvrp(40)],
    ids=["RC208 (time windows)", "CVRP"],
)
def test_vrooms_plan_is_feasible_in_the_solvers_model_at_the_same_distance(document: dict) -> None:
    instance = Instance.of("instance", document)
    solution = vroom_input(instance).solve(exploration_level=1, nb_threads=1)
    routes = vroom_routes(instance, solution)

    assert len(solution.unassigned) == 0
    assert instance.served_once(routes)
    plan = plan_in_pyvrp(instance, routes)
    assert plan.is_feasible()
    assert plan.distance() == instance.distance(routes) == solution.summary.cost


def test_a_run_in_its_own_process_reports_its_plan() -> None:
    instance = Instance.of("CVRP", random_cvrp(20))

    run = run_vroom(instance, 1, threads=1, timeout_s=60)

    assert isinstance(run, VroomRun)
    assert run.unassigned == 0
    assert instance.served_once(run.routes)
    assert instance.distance(run.routes) == run.cost


def test_a_request_vroom_would_be_given_differently_is_refused() -> None:
    document = random_cvrp(5)
    document["stops"][0] |= {"required": False, "prize": 10}

    with pytest.raises(Unsupported):
        Instance.of("optional stops", document)
