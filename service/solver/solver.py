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
from service.solver.problem import Problem, build_problem
from service.solver.request import SolveRequest

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
) -> SolveOutcome:
    """Minimise the request's objective within `time_limit_s` of wall time, counted from this call.

    `pin_conflicts` names stops and shipments that pins rule out: they stay off every route and
    are listed as unassigned with that reason.

    `on_progress` is called at most every PROGRESS_INTERVAL_S and once at the end; `on_best`,
    if given, receives the payload of an improved best solution at most as often, so a caller
    that must abandon a run (process.py) still holds the best so far. Exceptions raised by the
    callbacks propagate; PyVRP's own end in a `failed` outcome with a short reason.
    """
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in 0..{MAX_SEED}")
    if not time_limit_s > 0:
        raise ValueError("time_limit_s must be positive")
    started = time.perf_counter()
    try:
        problem = build_problem(request, *build_matrices(request), pin_conflicts=pin_conflicts)
    except (ValueError, IndexError) as exc:
        # PyVRP checks what the request's rules cannot see, e.g. a shift outside its depot's hours.
        return SolveOutcome.failed(f"the solver refused the problem: {_first_line(exc)}")
    if should_stop():
        return SolveOutcome.failed(CANCELLED_EARLY)

    def payload(solution: Solution, iterations: int) -> dict[str, Any]:
        runtime_s = time.perf_counter() - started
        return build_payload(
            request,
            problem,
            solution,
            iterations=iterations,
            runtime_s=runtime_s,
            seed=seed,
            time_limit_s=time_limit_s,
        )

    monitor = _SearchMonitor(
        started=started,
        time_limit_s=time_limit_s,
        on_progress=on_progress,
        should_stop=should_stop,
        on_best=None
        if on_best is None
        else lambda solution, iterations: on_best(payload(solution, iterations)),
    )
    try:
        result = _run(problem, seed, monitor)
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


def _run(problem: Problem, seed: int, monitor: _SearchMonitor) -> pyvrp.Result:
    # PyVRP's penalty bounds are per unit of violation (load, time warp, excess distance) in
    # objective units; under the cost objective those are 1/scale of the currency unit, so the
    # bounds are scaled alike. Unscaled, a van's fixed cost outweighed the largest penalty for
    # overloading another, and the search settled on an overloaded route.
    defaults = PenaltyParams()
    penalty = PenaltyParams(
        min_penalty=defaults.min_penalty * problem.scale, max_penalty=defaults.max_penalty * problem.scale
    )
    params = pyvrp.SolveParams(ils=IteratedLocalSearchParams(callbacks=monitor), penalty=penalty)
    # Statistics would cost Python time in every iteration, and nothing reads them.
    return pyvrp.solve(problem.data, stop=monitor, seed=seed, collect_stats=False, params=params)


def _first_line(exc: Exception) -> str:
    # PyVRP's messages are fixed sentences; bounded anyway, a reason is shown to clients.
    return (str(exc).splitlines() or [type(exc).__name__])[0][:160]


class _SearchMonitor(IteratedLocalSearchCallbacks):
    """PyVRP's stopping criterion and its search callbacks in one object.

    PyVRP calls the criterion with the best cost before every iteration, but that cost is a
    sentinel for an infeasible solution and includes uncollected prizes, so the best solution
    itself is taken from the `on_start`/`on_best` callbacks. The time limit is MaxRuntime's test
    (elapsed > limit), on a clock started before the matrices were built.
    """

    def __init__(
        self,
        *,
        started: float,
        time_limit_s: float,
        on_progress: Callable[[Progress], None],
        should_stop: Callable[[], bool],
        on_best: Callable[[Solution, int], None] | None,
    ) -> None:
        self.cancelled = False
        # A callback's own exception, kept to re-raise once PyVRP has unwound.
        self.error: Exception | None = None
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
        self._new_best(ils.initial_solution)

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
            best_distance=best.distance() if best is not None and feasible else None,
            feasible=feasible,
        )
