"""run_solve(): real child processes, real PyVRP. Which clock ended a solve is told by its outcome
(a child frozen with SIGSTOP cannot answer, whatever the machine's speed), never by a stopwatch."""

from __future__ import annotations

import asyncio
import copy
import multiprocessing
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from service.solver.example import EXAMPLE_REQUEST
from service.solver.matrix import build_matrices
from service.solver.outcome import CANCELLED_EARLY, Progress, SolveOutcome
from service.solver.process import PROCESS_DIED, TIME_LIMIT_EXCEEDED, run_solve, warm_up
from service.solver.request import parse_solve_request
from tests.kit.checker import check_solution
from tests.kit.instances import DATA, synthetic_request
from tests.kit.vrplib_io import request_from_vrplib


@pytest.fixture(scope="module")
def rc208() -> dict[str, Any]:
    return request_from_vrplib(DATA / "RC208.vrp", round_func="dimacs")


@pytest.fixture(scope="module")
def large() -> dict[str, Any]:
    """2,000 stops with an explicit 2,001 × 2,001 distance and duration matrix."""
    return synthetic_request(2000, seed=7, explicit_matrix=True)


@pytest.fixture(autouse=True)
async def fork_server() -> None:
    # Started once, ahead of the timed tests: its boot (imports) is not what they measure.
    await warm_up()


class Recorder:
    """An on_progress that keeps every report and wakes waiters on the first feasible one."""

    def __init__(self, then: Callable[[Progress], None] = lambda progress: None) -> None:
        self.reports: list[Progress] = []
        self.feasible = asyncio.Event()
        self._then = then

    async def __call__(self, progress: Progress) -> None:
        self.reports.append(progress)
        if progress.feasible and not self.feasible.is_set():
            self.feasible.set()
            self._then(progress)


async def _run(
    document: dict[str, Any],
    on_progress: Callable[[Progress], Awaitable[None]],
    *,
    time_limit_s: float = 10,
    grace_s: float = 5,
    cancel: asyncio.Event | None = None,
) -> SolveOutcome:
    return await run_solve(
        document,
        time_limit_s=time_limit_s,
        seed=1,
        max_stops=2000,
        on_progress=on_progress,
        cancel=cancel or asyncio.Event(),
        grace_s=grace_s,
    )


def _check(document: dict[str, Any], outcome: SolveOutcome) -> None:
    assert outcome.payload is not None
    distances, durations = build_matrices(parse_solve_request(copy.deepcopy(document), max_stops=2000))
    check_solution(document, distances, durations, outcome.payload)


def _solver_children() -> list[multiprocessing.process.BaseProcess]:
    return [child for child in multiprocessing.active_children() if child.name == "routebook-solve"]


async def test_progress_arrives_repeatedly_and_the_result_checks_out(rc208: dict[str, Any]) -> None:
    recorder = Recorder()
    outcome = await _run(rc208, recorder, time_limit_s=2)
    assert outcome.status == "succeeded"
    _check(rc208, outcome)
    assert len(recorder.reports) >= 2
    assert recorder.reports[-1].iterations == outcome.payload["solver"]["iterations"]  # type: ignore[index]
    assert not _solver_children()


async def test_a_cancel_is_answered_by_the_child_with_its_best_so_far(rc208: dict[str, Any]) -> None:
    cancel = asyncio.Event()
    recorder = Recorder(then=lambda progress: cancel.set())
    outcome = await _run(rc208, recorder, time_limit_s=30, cancel=cancel)
    assert outcome.status == "cancelled"
    _check(rc208, outcome)
    # The child answered the cancel itself (a killed one sends no final report): its last report
    # is its final one, and it stopped long before its time limit.
    assert outcome.payload is not None
    assert recorder.reports[-1].iterations == outcome.payload["solver"]["iterations"]
    assert outcome.payload["solver"]["runtime_s"] < 30


async def test_a_cancel_the_child_cannot_answer_before_any_solution_fails_the_solve(
    rc208: dict[str, Any],
) -> None:
    # A child frozen (SIGSTOP) as it starts stands for one inside PyVRP's uninterruptible
    # construction: it cannot see the cancel, so it is killed, and there is no best-so-far to keep.
    # The watchdog is set to end it 3 s after the start: only a kill at the cancel's grace, which
    # comes first, gives this outcome (the watchdog's would be TIME_LIMIT_EXCEEDED).
    cancel = asyncio.Event()
    solving = asyncio.create_task(_run(rc208, Recorder(), time_limit_s=3, grace_s=0, cancel=cancel))
    os.kill(await _solver_child_pid(), signal.SIGSTOP)
    cancel.set()
    outcome = await solving
    assert outcome == SolveOutcome.failed(CANCELLED_EARLY)
    assert not _solver_children()


async def test_a_cancel_the_child_cannot_answer_keeps_its_last_best(rc208: dict[str, Any]) -> None:
    cancel = asyncio.Event()
    feasible_reports = 0

    async def freeze_then_cancel(progress: Progress) -> None:
        nonlocal feasible_reports
        feasible_reports += progress.feasible
        # The child sends its best right after the feasible report that announced it, so by
        # the next report the parent holds a best-so-far payload.
        if feasible_reports == 2 and not cancel.is_set():
            (child,) = _solver_children()
            os.kill(child.pid, signal.SIGSTOP)  # type: ignore[arg-type]
            cancel.set()

    # Frozen, the child cannot answer: `cancelled` with a payload can only be the parent's kill at
    # the cancel's grace keeping the last best (the watchdog's outcome is a `failed`).
    outcome = await _run(rc208, freeze_then_cancel, time_limit_s=30, cancel=cancel)
    assert outcome.status == "cancelled"
    _check(rc208, outcome)
    assert not _solver_children()


async def _solver_child_pid() -> int:
    """The running solve's child, as soon as it has been started."""
    async with asyncio.timeout(10):
        while True:
            children = _solver_children()
            if children and children[0].pid is not None:
                return children[0].pid
            await asyncio.sleep(0.005)


async def test_a_solve_cancelled_before_it_starts_starts_no_process(rc208: dict[str, Any]) -> None:
    cancel = asyncio.Event()
    cancel.set()
    outcome = await _run(rc208, Recorder(), cancel=cancel)
    assert outcome == SolveOutcome.failed(CANCELLED_EARLY)


async def test_the_watchdog_kills_a_child_that_overruns(rc208: dict[str, Any]) -> None:
    # A frozen child (SIGSTOP) overruns whatever the machine's speed, as one inside PyVRP's
    # uninterruptible work does: only the watchdog, at 0.15 s, can end it (and it is collected).
    solving = asyncio.create_task(_run(rc208, Recorder(), time_limit_s=0.1, grace_s=0.05))
    os.kill(await _solver_child_pid(), signal.SIGSTOP)
    outcome = await solving
    assert outcome == SolveOutcome.failed(TIME_LIMIT_EXCEEDED)
    assert not _solver_children()


async def test_a_child_killed_by_a_signal_is_a_safe_failure(rc208: dict[str, Any]) -> None:
    pids: list[int] = []

    def kill_child(progress: Progress) -> None:
        (child,) = _solver_children()
        assert child.pid is not None
        pids.append(child.pid)
        os.kill(child.pid, signal.SIGKILL)

    outcome = await _run(rc208, Recorder(then=kill_child), time_limit_s=30)
    assert outcome == SolveOutcome.failed(PROCESS_DIED)
    assert pids and not _solver_children()


async def test_cancelling_the_awaiting_task_kills_the_child(rc208: dict[str, Any]) -> None:
    recorder = Recorder()
    task = asyncio.create_task(_run(rc208, recorder, time_limit_s=30))
    await recorder.feasible.wait()
    (child,) = _solver_children()
    pid = child.pid
    assert pid is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_a_problem_pyvrp_refuses_fails_with_a_short_reason() -> None:
    document = copy.deepcopy(EXAMPLE_REQUEST)
    document["vehicle_types"][0]["shift"] = [0, 3600]  # the depot opens at 21600
    outcome = await _run(document, Recorder())
    assert outcome.status == "failed" and outcome.payload is None and outcome.reason is not None
    assert outcome.reason.startswith("the solver refused the problem:")
    assert "Traceback" not in outcome.reason and "\n" not in outcome.reason and len(outcome.reason) <= 200


async def test_an_invalid_document_fails_with_its_first_error() -> None:
    document = copy.deepcopy(EXAMPLE_REQUEST)
    document["stops"][2]["time_window"] = [50, 10]
    outcome = await _run(document, Recorder())
    assert outcome == SolveOutcome.failed(
        "the request is not solvable: /stops/2/time_window: earliest must not be after latest"
    )


async def test_a_slow_progress_consumer_gets_the_newest_reports_and_never_stalls_the_solve() -> None:
    received: list[Progress] = []
    release = asyncio.Event()

    async def stuck(progress: Progress) -> None:
        # A database write that does not return until the test says so.
        received.append(progress)
        await release.wait()

    solving = asyncio.create_task(_run(copy.deepcopy(EXAMPLE_REQUEST), stuck, time_limit_s=1.0))
    pid = await _solver_child_pid()
    (child,) = [c for c in _solver_children() if c.pid == pid]
    # The child solves to its end and exits while the first report is still being written: nothing
    # it sends waits on the consumer.
    await _exited(child)
    assert len(received) == 1 and not solving.done()
    release.set()
    outcome = await solving
    assert outcome.status == "succeeded" and outcome.payload is not None
    # The reports sent meanwhile replaced each other: one more call, with the newest (the final one).
    assert len(received) == 2
    assert received[-1].iterations == outcome.payload["solver"]["iterations"]


async def _exited(child: multiprocessing.process.BaseProcess) -> None:
    async with asyncio.timeout(60):
        while child.exitcode is None:
            child.join(timeout=0)
            await asyncio.sleep(0.01)


async def test_a_large_document_with_an_explicit_matrix_solves(large: dict[str, Any]) -> None:
    # Generous grace: parsing 8 million cells and PyVRP's set-up take seconds on a busy machine.
    outcome = await _run(large, Recorder(), time_limit_s=1, grace_s=30)
    assert outcome.status == "succeeded"
    _check(large, outcome)
    assert len(outcome.payload["unassigned"]) == 0  # type: ignore[index]
