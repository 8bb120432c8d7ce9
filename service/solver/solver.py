"""`solve()`: one PyVRP run under a time limit, reporting progress and honouring cancellation.

Pure computation, no I/O of its own: it runs in whatever process calls it (see process.py for
the worker's separate process).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Any

import pyvrp
from pyvrp import (
    IteratedLocalSearch,
    IteratedLocalSearchCallbacks,
    IteratedLocalSearchParams,
    PenaltyParams,
    Solution,
)

from service.solver.matrix import build_matrices
from service.solver.outcome import CANCELLED_EARLY, MAX_SEED, Progress, SolutionStatus, SolveOutcome
from service.solver.payload import build_payload
from service.solver.pinning import PinnedProblem, broken_pins, pin_problem, pinned_left_out, to_base
from service.solver.pins import Replan
from service.solver.problem import build_problem
from service.solver.request import SolveRequest
from service.solver.warmstart import seed_solution, solve_from

PROGRESS_INTERVAL_S = 0.25
# should_stop() may cost a system call (process.py polls a socket); every 50 ms is still far
# inside the 1 s cancellation promise.
STOP_CHECK_INTERVAL_S = 0.05

_log = logging.getLogger("routebook.solving")


def solve(
    request: SolveRequest,
    *,
    time_limit_s: float,
    seed: int,
    on_progress: Callable[[Progress], None],
    should_stop: Callable[[], bool],
    on_best: Callable[[dict[str, Any]], None] | None = None,
    pin_conflicts: Collection[str] = (),
    replan: Replan | None = None,
) -> SolveOutcome:
    """Minimise the request's objective within `time_limit_s` of wall time, counted from this call.

    `pin_conflicts` names stops and shipments that pins rule out: they stay off every route and
    are listed as unassigned with that reason.

    `on_progress` is called at most every PROGRESS_INTERVAL_S and once at the end; `on_best`,
    if given, receives the payload of an improved best solution at most as often, so a caller
    that must abandon a run (process.py) still holds the best so far. Exceptions raised by the
    callbacks propagate; PyVRP's own end in a `failed` outcome with a short reason. `replan`, if
    given, pins routes and stops (pinning.py) and seeds the search with earlier routes (warmstart.py).
    """
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in 0..{MAX_SEED}")
    if not time_limit_s > 0:
        raise ValueError("time_limit_s must be positive")
    started = time.perf_counter()
    try:
        distances, durations = build_matrices(request)
        pins = replan.pins if replan else []
        problem = build_problem(request, distances, durations, pin_conflicts=pin_conflicts)
        # A pinned stop the checks before the solve leave out (no vehicle could serve it at all)
        # cannot hold its pin: it says so among its reasons, and its pin is dropped.
        unservable = pinned_left_out(problem, request, pins)
        for stop_id in unservable:
            if "pin_conflict" not in problem.left_out[stop_id]:
                problem.left_out[stop_id].append("pin_conflict")
        pinned = pin_problem(problem, request, pins, distances, durations)
        initial, earlier = None, None
        if replan is not None and replan.routes is not None:
            initial, earlier = seed_solution(pinned, request, replan.routes)
        del distances, durations
    except (ValueError, IndexError) as exc:
        # PyVRP checks what the request's rules cannot see, e.g. a shift outside its depot's hours.
        return SolveOutcome.failed(f"the solver refused the problem: {_first_line(exc)}")
    if should_stop():
        return SolveOutcome.failed(CANCELLED_EARLY)

    def payload(solution: Solution, iterations: int) -> dict[str, Any]:
        runtime_s = time.perf_counter() - started
        routes, vehicles = to_base(pinned, solution, earlier)
        built = build_payload(
            request,
            problem,
            routes,
            iterations=iterations,
            runtime_s=runtime_s,
            seed=seed,
            time_limit_s=time_limit_s,
            vehicles=vehicles,
        )
        built["solver"]["initial_distance"] = monitor.initial_distance
        if replan is not None and replan.pins:
            conflicts = broken_pins(pinned, request, built["routes"], also=unservable)
            built["pin_conflicts"] = conflicts
            # A pinned stop the solver left out is unassigned because of its pin (one left out
            # before the solve keeps the reasons found then, pin_conflict among them).
            for entry in built["unassigned"]:
                if entry["id"] in conflicts and entry["id"] not in problem.left_out:
                    entry["reasons"] = ["pin_conflict"]
            # The routes alone may be feasible with a pin broken; the pinned model is not.
            built["feasible"] = built["feasible"] and solution.is_feasible()
        return built

    monitor = _SearchMonitor(
        started=started,
        offset=pinned.offset,
        time_limit_s=time_limit_s,
        on_progress=on_progress,
        should_stop=should_stop,
        on_best=None
        if on_best is None
        else lambda solution, iterations: on_best(payload(solution, iterations)),
    )
    try:
        result = _run(pinned, seed, monitor, initial)
    except Exception as exc:
        if monitor.error is not None:
            raise monitor.error from None
        _log.exception("PyVRP failed")
        return SolveOutcome.failed(f"the solver failed ({type(exc).__name__})")
    if monitor.error is not None:
        raise monitor.error
    on_progress(monitor.progress(result.best, result.num_iterations))
    status = SolutionStatus.CANCELLED if monitor.cancelled else SolutionStatus.SUCCEEDED
    return SolveOutcome(status=status, payload=payload(result.best, result.num_iterations))


def _run(pinned: PinnedProblem, seed: int, monitor: _SearchMonitor, initial: Solution | None) -> pyvrp.Result:
    # PyVRP's penalty bounds are per unit of violation (load, time warp, excess distance) in
    # objective units; under the cost objective those are 1/scale of the currency unit, so the
    # bounds are scaled alike. Unscaled, a van's fixed cost outweighed the largest penalty for
    # overloading another, and the search settled on an overloaded route.
    scale = pinned.base.scale
    defaults = PenaltyParams()
    penalty = PenaltyParams(
        min_penalty=defaults.min_penalty * scale, max_penalty=defaults.max_penalty * scale
    )
    params = pyvrp.SolveParams(ils=IteratedLocalSearchParams(callbacks=monitor), penalty=penalty)
    if initial is not None:
        return solve_from(pinned.data, initial, stop=monitor, seed=seed, params=params)
    # Statistics would cost Python time in every iteration, and nothing reads them.
    return pyvrp.solve(pinned.data, stop=monitor, seed=seed, collect_stats=False, params=params)


def _first_line(exc: Exception) -> str:
    # PyVRP's messages are fixed sentences; bounded anyway, a reason is shown to clients.
    return (str(exc).splitlines() or [type(exc).__name__])[0][:160]


class _SearchMonitor(IteratedLocalSearchCallbacks):
    """PyVRP's stopping criterion and its search callbacks in one object.

    PyVRP calls the criterion with the best cost before every iteration, but that cost is a
    sentinel for an infeasible solution and includes uncollected prizes, so the best solution
    itself is taken from the `on_start`/`on_best` callbacks. The time limit is MaxRuntime's test
    (elapsed > limit), on a clock started before the matrices were built. Distances are the
    request's: `offset` adds what pins keep out of the solver's problem (pinned routes' own).
    """

    def __init__(
        self,
        *,
        started: float,
        offset: int,
        time_limit_s: float,
        on_progress: Callable[[Progress], None],
        should_stop: Callable[[], bool],
        on_best: Callable[[Solution, int], None] | None,
    ) -> None:
        self.cancelled = False
        # A callback's own exception, kept to re-raise once PyVRP has unwound.
        self.error: Exception | None = None
        # The first incumbent's distance (the warm start's seed, or PyVRP's own start), if feasible.
        self.initial_distance: int | None = None
        self._offset = offset
        self._started = started
        self._time_limit_s = time_limit_s
        self._on_progress = on_progress
        self._should_stop = should_stop
        self._on_best = on_best
        self._best: Solution | None = None
        self._improved = False
        self._calls = 0
        self._next_report = started + PROGRESS_INTERVAL_S
        self._next_stop_check = started

    def on_start(self, ils: IteratedLocalSearch) -> None:
        first = ils.initial_solution
        if first.is_feasible():
            self.initial_distance = first.distance() + self._offset
        self._new_best(first)

    def on_best(self, best: Solution) -> None:
        self._new_best(best)

    def _new_best(self, best: Solution) -> None:
        self._best = best
        self._improved = True

    def __call__(self, best_cost: int) -> bool:
        self._calls += 1
        now = time.perf_counter()
        try:
            if now >= self._next_stop_check:
                self._next_stop_check = now + STOP_CHECK_INTERVAL_S
                if self._should_stop():
                    self.cancelled = True
                    return True
            if now - self._started > self._time_limit_s:
                return True
            if now >= self._next_report:
                self._next_report = now + PROGRESS_INTERVAL_S
                self._report()
        except Exception as exc:
            self.error = exc
            return True
        return False

    def _report(self) -> None:
        # The first call comes before the first iteration.
        iterations = self._calls - 1
        self._on_progress(self.progress(self._best, iterations))
        if self._on_best is not None and self._improved and self._best is not None:
            self._improved = False
            self._on_best(self._best, iterations)

    def progress(self, best: Solution | None, iterations: int) -> Progress:
        feasible = best is not None and best.is_feasible()
        return Progress(
            elapsed_s=round(time.perf_counter() - self._started, 3),
            iterations=iterations,
            best_distance=best.distance() + self._offset if best is not None and feasible else None,
            feasible=feasible,
        )
