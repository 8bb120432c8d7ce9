"""The VROOM side of `bench_solve --sections vroom`: a solve request as VROOM's input, VROOM run in a
child process under a timeout, and every plan's distance recomputed from the one matrix.

Both engines see the same problem: the integer matrices are the solver's own (`build_matrices` of the
parsed request, so VROOM gets exactly what PyVRP gets), the same vehicles (count, capacity, depot,
shift), the same stops (demand, service duration, time window) and the same objective, the least
total distance: VROOM's cost matrix is the distance matrix and its durations (for time windows) the
duration matrix. A request with anything VROOM would be given differently (shipments, optional
stops, reloads, route limits, the cost objective) is refused rather than approximated.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.solver.matrix import build_matrices
from service.solver.process import SOLVER_NICENESS
from service.solver.request import IntMatrix, SolveRequest, parse_solve_request


class Unsupported(Exception):
    """The request has a feature this comparison does not give VROOM the same way."""


@dataclass(frozen=True)
class Instance:
    """A request, as sent to the API, with the matrices the solver builds from it."""

    name: str
    document: dict[str, Any]
    request: SolveRequest
    distances: IntMatrix
    durations: IntMatrix

    @classmethod
    def of(cls, name: str, document: dict[str, Any]) -> Instance:
        request = parse_solve_request(document, max_stops=1_000_000)
        _check_supported(request)
        distances, durations = build_matrices(request)
        return cls(name, document, request, distances, durations)

    def distance(self, routes: list[tuple[str, list[str]]]) -> int:
        """Total distance of routes given as (vehicle type id, stop ids), depot to depot."""
        depots = {depot.id: i for i, depot in enumerate(self.request.depots)}
        first = len(self.request.depots)
        stops = {stop.id: first + i for i, stop in enumerate(self.request.stops)}
        vehicles = {vehicle.id: vehicle for vehicle in self.request.vehicle_types}
        total = 0
        for vehicle_type, visited in routes:
            vehicle = vehicles[vehicle_type]
            path = [
                depots[vehicle.depot],
                *(stops[stop] for stop in visited),
                depots[vehicle.end_depot or vehicle.depot],
            ]
            total += int(self.distances[path[:-1], path[1:]].sum())
        return total

    def served_once(self, routes: list[tuple[str, list[str]]]) -> bool:
        visited = [stop for _, stops in routes for stop in stops]
        return sorted(visited) == sorted(stop.id for stop in self.request.stops)


def _check_supported(request: SolveRequest) -> None:
    if request.shipments or request.options.objective != "distance":
        raise Unsupported("shipments and the cost objective are not compared")
    if not all(stop.required for stop in request.stops):
        raise Unsupported("optional stops are not compared")
    for vehicle in request.vehicle_types:
        if vehicle.reload_depots or vehicle.max_distance is not None or vehicle.max_duration is not None:
            raise Unsupported("reloads and route limits are not compared")
    if any(depot.time_window is not None for depot in request.depots[1:]):
        raise Unsupported("only the first depot may have opening hours")


@dataclass(frozen=True)
class VroomRun:
    level: int
    routes: list[tuple[str, list[str]]]  # (vehicle type id, stop ids)
    unassigned: int
    cost: int  # VROOM's own summary
    wall_s: float  # input built and solved, in the child
    cpu_s: float


@dataclass(frozen=True)
class VroomTimeout:
    level: int
    timeout_s: float


def run_vroom(instance: Instance, level: int, *, threads: int, timeout_s: float) -> VroomRun | VroomTimeout:
    """VROOM at `level` in a fresh spawned process, killed after `timeout_s` of wall time."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(send, instance, level, threads), daemon=True)
    process.start()
    send.close()
    try:
        # The child sends once it has solved; the spawn itself (an interpreter, numpy) is not timed.
        if not receive.poll(timeout_s + 30):
            return VroomTimeout(level, timeout_s)
        answer = receive.recv()
    except EOFError:
        raise RuntimeError(
            f"VROOM's process ended without an answer (exit code {process.exitcode})"
        ) from None
    finally:
        process.kill()
        process.join()
    if isinstance(answer, VroomRun) and answer.wall_s > timeout_s:
        return VroomTimeout(level, timeout_s)
    assert isinstance(answer, VroomRun)
    return answer


def _child(send: Any, instance: Instance, level: int, threads: int) -> None:
    import vroom  # noqa: F401  (imported before the clock starts, as a service would have it)

    # The worker's solver processes run at this niceness; on a shared machine VROOM at 0 would get a
    # larger share of the CPU than the solver it is compared with, in the same wall time.
    os.nice(SOLVER_NICENESS)

    started, cpu = time.perf_counter(), time.process_time()
    problem = vroom_input(instance)
    solution = problem.solve(exploration_level=level, nb_threads=threads)
    wall_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    send.send(
        VroomRun(
            level=level,
            routes=vroom_routes(instance, solution),
            unassigned=len(solution.unassigned),
            cost=int(solution.summary.cost),
            wall_s=wall_s,
            cpu_s=cpu_s,
        )
    )


def vroom_input(instance: Instance) -> Any:
    """The request as `vroom.Input`: location i is matrix row i (depots, then stops)."""
    import vroom

    request = instance.request
    problem = vroom.Input()
    problem.set_durations_matrix("car", instance.durations.astype(np.uint32))
    problem.set_costs_matrix("car", instance.distances.astype(np.uint32))
    depots = {depot.id: i for i, depot in enumerate(request.depots)}
    opening = request.depots[0].time_window
    vehicle_id = 0
    for vehicle in request.vehicle_types:
        window = _intersect(vehicle.shift, opening)
        # More vehicles than stops are never used; the solver caps the count alike.
        for _ in range(min(vehicle.count, len(request.stops))):
            problem.add_vehicle(
                vroom.Vehicle(
                    vehicle_id,
                    start=depots[vehicle.depot],
                    end=depots[vehicle.end_depot or vehicle.depot],
                    capacity=vehicle.capacity,
                    time_window=None if window is None else vroom.TimeWindow(*window),
                    # The default costs count duration; the cost matrix replaces them.
                    description=vehicle.id,
                )
            )
            vehicle_id += 1
    first = len(request.depots)
    problem.add_job(
        [
            vroom.Job(
                i,
                location=first + i,
                default_service=stop.service_duration,
                delivery=stop.demand,
                time_windows=[] if stop.time_window is None else [vroom.TimeWindow(*stop.time_window)],
            )
            for i, stop in enumerate(request.stops)
        ]
    )
    return problem


def _intersect(a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
    if a is None or b is None:
        return a or b
    return max(a[0], b[0]), min(a[1], b[1])


def vroom_routes(instance: Instance, solution: Any) -> list[tuple[str, list[str]]]:
    frame = solution.routes
    stops = instance.request.stops
    vehicle_types = [
        vehicle.id
        for vehicle in instance.request.vehicle_types
        for _ in range(min(vehicle.count, len(stops)))
    ]
    routes = []
    for vehicle_id, steps in frame.groupby("vehicle_id", sort=True):
        jobs = steps[steps["type"] == "job"]["id"]
        routes.append((vehicle_types[int(vehicle_id)], [stops[int(job)].id for job in jobs]))
    return routes
