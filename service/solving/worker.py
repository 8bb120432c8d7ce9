"""The solve worker (`python -m service.worker`): takes jobs from the queue and runs each in a process.

It takes one job whenever one of its SOLVE_WORKERS slots is free (queue.py says why not pgqueuer's
QueueManager); every queue operation goes through the pool, in a short transaction of its own.

- Pickup: a NOTIFY on the queue's channel wakes the loop when a job is queued (the process's one
  LISTEN connection, `core.notify.Listener`, which reconnects by itself, solves running or not); an
  idle poll every IDLE_POLL_S also finds jobs whose worker went silent, and anything missed while
  the listener was down.
- Crash safety (lease by heartbeat): every SOLVE_HEARTBEAT_TIMEOUT_S / 3 the worker beats for the
  jobs it runs, through its pool, independently of the queue connection and of the solves; a job
  whose heartbeat is older than the timeout (its worker was killed) is picked again by any worker
  and re-run from the snapshot, up to SOLVE_MAX_ATTEMPTS runs, then `failed`. A beat that finds a
  job no longer held by this worker (its lease was lost: another worker has it) stops that solve,
  and the run's writes are fenced by its attempt number (repository.py), so a solve is never
  finished twice.
- Closing a job (the queue's log) also goes through the pool, retried: the result is written
  first, so a job left open is found finished by its next pick and closed as what it was.
- Cancellation: a NOTIFY on CANCEL_CHANNEL (and, should one be missed, the cancel flag returned by
  every progress write) stops the solve, which keeps its best so far. A job picked for a solve
  cancelled while no worker ran it finishes that solve (`start()`).
- The sweeper: every SWEEP_INTERVAL_S the worker looks for solves that nothing will finish (active,
  with no live job in the queue for the lease plus SWEEP_GRACE) and ends them `failed`.
- Shutdown (SIGTERM/SIGINT): no new jobs; running solves are stopped and handed back to the queue
  at once (status pending, job re-queued), so another worker resumes them without waiting out a lease.
- Companions: other work of the worker process (the outbound webhook dispatcher), given by the
  entry point, share the pool and the listener and run beside the solves, never in their way.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from service.config import Settings
from service.core import metrics, tracing
from service.core.db import Database, classify
from service.core.notify import Listener, Subscription
from service.solver.outcome import Progress, SolveOutcome, final_progress
from service.solver.process import run_solve, warm_up
from service.solving import queue
from service.solving.queue import QUEUE_CHANNEL, Job, JobEnd, SolveJob
from service.solving.repository import (
    CANCEL_CHANNEL,
    FINAL_STATUSES,
    NotStarted,
    SolutionRepository,
    StartedSolve,
    end_stranded,
)

log = logging.getLogger("routebook.worker")

IDLE_POLL_S = 1.0
# With metrics on, the queue's depth is read this often (one small query, by each worker).
QUEUE_DEPTH_INTERVAL_S = 5.0
# Progress is written (and announced) this often while a solve runs: event streams promise at least
# one progress event a second, and PyVRP's set-up of a large instance reports nothing for seconds.
PROGRESS_INTERVAL_S = 0.5
WORKER_APPLICATION_NAME = "routebook-worker"
# Waits between tries to take a job while the database is unavailable.
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)
# Closing a job is retried this often (seconds between tries) through a database outage.
CLOSE_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)
INTERRUPTED = "the solve was interrupted too many times"
# A job's end in the queue's log, by the status its solve ended with.
_JOB_END: dict[str, JobEnd] = {"succeeded": "successful", "failed": "successful", "cancelled": "canceled"}


class Companion(Protocol):
    """Work that runs in the worker process beside the solves, until cancelled."""

    def subscriptions(self) -> list[Subscription]: ...

    async def run(self) -> None: ...


@dataclass
class _Running:
    job: Job
    solve: SolveJob
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    attempt: int | None = None  # the run's number, once started
    lease_lost: bool = False


class SolveWorker:
    def __init__(self, settings: Settings, db: Database, companions: Sequence[Companion] = ()) -> None:
        self._settings = settings
        self._db = db
        self._slots = asyncio.Semaphore(settings.solve_concurrency)
        self._running: dict[uuid.UUID, _Running] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._lease = timedelta(seconds=settings.solve_heartbeat_timeout_s)
        # A stranded solve is ended once it has been so for a lease and this much more.
        self._sweep_grace = timedelta(seconds=settings.solve_heartbeat_timeout_s)
        self.queue_manager_id = uuid.uuid4()
        url = settings.direct_database_url
        assert url is not None  # Database.from_settings refused a missing DATABASE_URL
        # LISTEN needs a session of its own: DATABASE_DIRECT_URL, never a transaction-mode pooler.
        self._listener = Listener(url, application_name=WORKER_APPLICATION_NAME)
        self._listener.subscribe(
            Subscription(QUEUE_CHANNEL, lambda _payload: self._wake.set(), on_live=self._live)
        )
        self._listener.subscribe(Subscription(CANCEL_CHANNEL, self._on_cancel))
        self._companions = list(companions)
        for companion in self._companions:
            for subscription in companion.subscriptions():
                self._listener.subscribe(subscription)
        self._announced_ready = False

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Serve until stop(). The listener, heartbeats and the sweeper each run on their own: none
        waits for a solve, nor for another."""
        await warm_up()
        gc.collect()
        gc.freeze()  # as the web process does: full collections need not walk start-up's objects
        self._listener.start()
        background = [
            asyncio.create_task(self._beat(), name="worker-heartbeat"),
            asyncio.create_task(self._sweep(), name="worker-sweeper"),
            *(asyncio.create_task(companion.run()) for companion in self._companions),
        ]
        if metrics.enabled():
            background.append(asyncio.create_task(self._measure_queue(), name="worker-queue-depth"))
        try:
            await self._take_jobs()
            await self._hand_back_running()
        finally:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._listener.stop()

    async def _live(self) -> None:
        """The listener is (again) connected: look for jobs at once, whatever was missed meanwhile."""
        self._wake.set()
        if not self._announced_ready:
            self._announced_ready = True
            log.info(
                "solve worker %s ready (%s slots)", self.queue_manager_id, self._settings.solve_concurrency
            )

    async def _take_jobs(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if not await self._free_slot():
                return
            try:
                self._wake.clear()
                # Privileged: the queue's jobs are the workers', not a user's rows.
                async with self._db.privileged() as conn:
                    job = await queue.take(conn, worker_id=self.queue_manager_id, lease=self._lease)
                failures = 0
            except Exception as exc:
                self._slots.release()
                if classify(exc) is None:
                    raise
                log.warning("no job taken: database unavailable (%s)", type(exc).__name__)
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):  # not wait_for: see core/notify.py
                        await self._stopping.wait()
                continue
            except BaseException:
                self._slots.release()
                raise
            if job is None or self._stopping.is_set():
                self._slots.release()
                await _first_of(self._wake.wait(), timeout=IDLE_POLL_S)
                continue
            self._start(job)

    async def _free_slot(self) -> bool:
        """Wait for a free slot; False when the worker is stopping instead."""
        slot = asyncio.ensure_future(self._slots.acquire())
        await _first_of(slot, self._stopping.wait())
        if slot.done() and not self._stopping.is_set():
            return True
        if slot.done():
            self._slots.release()
        else:
            slot.cancel()
        return False

    def _start(self, job: Job) -> None:
        solve = SolveJob.decode(job.payload)
        if solve.solution_id in self._running:
            # Our own late heartbeat let the dequeue hand us a job we are already running.
            self._slots.release()
            return
        running = _Running(job, solve)
        running.task = asyncio.create_task(self._run_job(running), name=f"solve-{solve.solution_id}")
        self._running[solve.solution_id] = running

    def _on_cancel(self, payload: str) -> None:
        with contextlib.suppress(ValueError):
            running = self._running.get(uuid.UUID(payload))
            if running is not None:
                running.cancel.set()

    async def _beat(self) -> None:
        """Every third of the lease, through the pool (the queue connection may be down, and the
        solves must not wait for it): renew this worker's jobs, and stop the solves of any that is
        no longer this worker's."""
        while True:
            await asyncio.sleep(self._lease.total_seconds() / 3)
            running = list(self._running.values())
            if not running:
                continue
            try:
                # Privileged: the queue's jobs are the workers', not a user's rows.
                async with self._db.privileged() as conn:
                    held = await queue.renew(
                        conn, [item.job.id for item in running], worker_id=self.queue_manager_id
                    )
            except Exception as exc:
                if classify(exc) is None:
                    log.exception("heartbeat failed")
                else:
                    log.warning("heartbeat not written (%s)", type(exc).__name__)
                continue
            for item in running:
                if item.job.id not in held and self._running.get(item.solve.solution_id) is item:
                    log.warning(
                        "solve %s: its lease was lost to another worker; stopping it", item.solve.solution_id
                    )
                    item.lease_lost = True
                    item.cancel.set()

    async def _measure_queue(self) -> None:
        """The queue's depth by status, for the metrics, every QUEUE_DEPTH_INTERVAL_S."""
        while True:
            try:
                # Privileged: the queue's jobs are the workers', not a user's rows.
                async with self._db.privileged() as conn:
                    metrics.queue_depth(await queue.depth(conn))
            except Exception as exc:
                if classify(exc) is None:
                    log.exception("queue depth not measured")
            await asyncio.sleep(QUEUE_DEPTH_INTERVAL_S)

    async def _sweep(self) -> None:
        """The second line behind start(): solves that nothing will finish are ended."""
        lease = self._lease
        while True:
            await asyncio.sleep(lease.total_seconds())
            try:
                async with self._db.as_sweeper() as conn:
                    stranded = await queue.stranded_solves(
                        conn, stranded_for=lease + self._sweep_grace, lease=lease
                    )
                for solve in stranded:
                    # Privileged: its job is closed in the queue, and its owner is the job's, not ours.
                    async with self._db.privileged() as conn:
                        if await end_stranded(conn, solve, lease=lease):
                            log.warning("solve %s had no live job; ended by the sweeper", solve.id)
            except Exception as exc:
                if classify(exc) is None:
                    log.exception("sweep failed")
                else:
                    log.warning("sweep skipped (%s)", type(exc).__name__)

    async def _run_job(self, running: _Running) -> None:
        solve = running.solve
        # The trace the job carries (the request that queued it) goes on here, at pickup.
        with tracing.span(
            "solve",
            kind=tracing.SpanKind.CONSUMER,
            parent=tracing.extract(solve.trace),
            attributes={"routebook.solution.id": str(solve.solution_id), "routebook.job.id": running.job.id},
        ) as span:
            try:
                status = await self._solve(running)
                if status is not None:
                    await self._close_job(running.job, status)
            except asyncio.CancelledError:
                raise  # shutting down: _hand_back_running re-queues it
            except Exception as exc:
                tracing.failed(span, exc)
                # A database outage mid-solve: the job is not closed, so once this worker's heartbeat
                # for it stops, another run (here or elsewhere) picks it up again.
                if classify(exc) is None:
                    log.exception("solve %s failed in the worker", solve.solution_id)
                else:
                    log.warning(
                        "solve %s interrupted: database unavailable (%s)",
                        solve.solution_id,
                        type(exc).__name__,
                    )
            finally:
                self._running.pop(solve.solution_id, None)
                self._slots.release()

    async def _solve(self, running: _Running) -> JobEnd | None:
        """Run the job's solve; the job's status for the queue's log, or None to leave the job alone
        (its lease was lost: it is another worker's now)."""
        solve = running.solve
        async with self._db.as_worker(solve.workspace_id, solve.user_id) as conn:
            repo = SolutionRepository(conn, workspace=solve.workspace_id, user=solve.user_id)
            started = await repo.start(solve.solution_id)
            if isinstance(started, StartedSolve) and started.attempts > self._settings.solve_max_attempts:
                await repo.finish(
                    solve.solution_id,
                    started.attempts,
                    "failed",
                    payload=None,
                    reason=INTERRUPTED,
                    progress=None,
                )
                metrics.solve_ended("failed", None, None)
                return "successful"
        if isinstance(started, NotStarted):
            return _not_started_status(solve, started)
        running.attempt = started.attempts
        if started.attempts == 1:
            metrics.solve_picked((datetime.now(UTC) - running.job.created).total_seconds())
        tracing.annotate({"routebook.solve.attempt": started.attempts})
        log.info("solving %s (attempt %d)", solve.solution_id, started.attempts)
        reporter = _ProgressReporter(self._db, solve, started.attempts, running.cancel)
        with tracing.detached():
            ticker = asyncio.create_task(reporter.tick(), name=f"progress-{solve.solution_id}")
        began_ns = time.time_ns()
        solving_since = time.monotonic()
        try:
            outcome = await run_solve(
                started.document,
                time_limit_s=float(started.time_limit_s),
                seed=started.seed,
                max_stops=self._settings.solve_max_stops,
                on_progress=reporter.offer,
                cancel=running.cancel,
                grace_s=self._settings.solve_grace_s,
                replan=(started.pins, started.seed_routes),
            )
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ticker
        _trace_solver_process(outcome, began_ns)
        if running.lease_lost:
            return None
        if await self._finish(solve, started, outcome):
            iterations = outcome.payload["solver"]["iterations"] if outcome.payload is not None else None
            metrics.solve_ended(outcome.status, time.monotonic() - solving_since, iterations)
            return _JOB_END[outcome.status]
        return await self._settle(running, started)

    async def _settle(self, running: _Running, started: StartedSolve) -> JobEnd | None:
        """The run's result was refused: say what became of the solve, and so of its job."""
        solve = running.solve
        async with self._db.as_worker(solve.workspace_id, solve.user_id) as conn:
            state = await SolutionRepository(
                conn, workspace=solve.workspace_id, user=solve.user_id
            ).run_state(solve.solution_id)
        if state is None:
            log.info("solve %s was deleted while it ran", solve.solution_id)
            return "deleted"
        status, attempts = state
        if attempts != started.attempts:
            log.warning(
                "solve %s was started again elsewhere; this run's result is dropped", solve.solution_id
            )
            return None
        return _JOB_END.get(status, "canceled") if status in FINAL_STATUSES else None

    async def _finish(self, solve: SolveJob, started: StartedSolve, outcome: SolveOutcome) -> bool:
        payload = None
        progress = None
        if outcome.payload is not None:
            # The ETag's value the solve was queued at: a client sees the solution is of an older version.
            payload = {**outcome.payload, "scenario_version": str(started.scenario_version)}
            progress = final_progress(outcome.payload)
        with tracing.span(
            "write result", attributes={"routebook.solve.outcome": outcome.status.value}
        ) as span:
            async with self._db.as_worker(solve.workspace_id, solve.user_id) as conn:
                finished = await SolutionRepository(
                    conn, workspace=solve.workspace_id, user=solve.user_id
                ).finish(
                    solve.solution_id,
                    started.attempts,
                    outcome.status,
                    payload=payload,
                    reason=outcome.reason,
                    progress=progress,
                )
            # Refused: the solve was deleted, cancelled or started again elsewhere meanwhile.
            span.set_attribute("routebook.write.accepted", finished)
        if finished:
            log.info("solve %s %s", solve.solution_id, outcome.status)
        return finished

    async def _close_job(self, job: Job, end: JobEnd) -> None:
        """Move the job to the queue's log. Retried through an outage; a job still open after that
        is found finished by its next pick, and closed then as what it was."""
        for delay in (0.0, *CLOSE_DELAYS):
            if delay:
                await asyncio.sleep(delay)
            try:
                # Privileged: the queue's log is the workers'.
                async with self._db.privileged() as conn:
                    await queue.close(conn, job, end)
                return
            except Exception as exc:
                if classify(exc) is None:
                    raise
        log.warning("job %s not closed (the database is unavailable); its next pick closes it", job.id)

    async def _hand_back_running(self) -> None:
        """Stop every running solve and put it back in the queue for another worker."""
        running = list(self._running.values())
        for item in running:
            if item.task is not None:
                item.task.cancel()
        for item in running:
            if item.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await item.task
        try:
            for item in running:
                if item.lease_lost:
                    continue  # another worker's now
                if item.attempt is not None:
                    async with self._db.as_worker(item.solve.workspace_id, item.solve.user_id) as tx:
                        repo = SolutionRepository(
                            tx, workspace=item.solve.workspace_id, user=item.solve.user_id
                        )
                        if not await repo.requeue(item.solve.solution_id, item.attempt):
                            continue  # finished, deleted or started elsewhere meanwhile
                # Privileged: the job goes back to the queue, which is the workers'.
                async with self._db.privileged() as tx:
                    await queue.hand_back(tx, item.job)
                log.info("solve %s handed back to the queue", item.solve.solution_id)
        except Exception as exc:
            if classify(exc) is None:
                raise
            log.warning("could not hand every solve back (%s); their lease will expire", type(exc).__name__)


def _trace_solver_process(outcome: SolveOutcome, began_ns: int) -> None:
    """The solver process's span, under the solve's, from the times the process reported.

    The child is another process (forked by the fork server, possibly killed on a cancel or by the
    watchdog): it sends its start and end with its outcome, and the span is made here. Propagating
    the trace into it instead would need an SDK and an exporter in every child, would lose the span
    of a child that is killed, and would bring tracing into the engine, which knows nothing of the
    service. An outcome the parent made up (the child died or was killed) is timed from here.
    """
    if not tracing.enabled():
        return
    start_ns, end_ns = outcome.ran_ns or (began_ns, time.time_ns())
    attributes: dict[str, str | int | bool] = {
        "routebook.solve.outcome": outcome.status.value,
        "routebook.solver.reported": outcome.ran_ns is not None,
    }
    if outcome.payload is not None:
        attributes["routebook.solver.iterations"] = int(outcome.payload["solver"]["iterations"])
    tracing.record("solver process", start_ns=start_ns, end_ns=end_ns, attributes=attributes)
    tracing.annotate({"routebook.solve.outcome": outcome.status.value})


def _not_started_status(solve: SolveJob, not_started: NotStarted) -> JobEnd:
    if not_started.why == "cancelled":
        log.info("solve %s was cancelled before a run started; failed", solve.solution_id)
        return "canceled"
    if not_started.why == "gone":
        return "deleted"
    # Finished by an earlier run whose job was never closed (e.g. its connection died just after).
    return _JOB_END.get(not_started.status or "", "canceled")


async def _first_of(*awaitables: Any, timeout: float | None = None) -> None:
    """Wait until one of `awaitables` is done (or `timeout`); the others that this call wrapped are
    cancelled. Futures passed in are left running for the caller."""
    futures = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future, awaitable in zip(futures, awaitables, strict=True):
            if future is not awaitable:
                future.cancel()


class _ProgressReporter:
    """Writes the newest progress every PROGRESS_INTERVAL_S, with the wall-clock elapsed time, so a
    stream hears from a solve even while PyVRP is busy setting up."""

    def __init__(self, db: Database, solve: SolveJob, attempt: int, cancel: asyncio.Event) -> None:
        self._db = db
        self._solve = solve
        self._attempt = attempt
        self._cancel = cancel
        self._started = time.monotonic()
        self._latest: Progress | None = None

    async def offer(self, progress: Progress) -> None:
        self._latest = progress

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            latest = self._latest
            progress = Progress(
                elapsed_s=round(time.monotonic() - self._started, 2),
                iterations=latest.iterations if latest else 0,
                best_distance=latest.best_distance if latest else None,
                feasible=latest.feasible if latest else False,
            )
            try:
                async with self._db.as_worker(self._solve.workspace_id, self._solve.user_id) as conn:
                    cancel = await SolutionRepository(
                        conn, workspace=self._solve.workspace_id, user=self._solve.user_id
                    ).report(self._solve.solution_id, self._attempt, progress)
            except Exception as exc:
                log.warning("progress of %s not written (%s)", self._solve.solution_id, type(exc).__name__)
                continue
            if cancel is None or cancel:
                # Cancelled (a missed NOTIFY is caught here), or this run may no longer write: the
                # solve was deleted, or started again elsewhere (run_state tells which, at the end).
                self._cancel.set()


async def serve(
    settings: Settings, companions: Sequence[Callable[[Settings, Database], Companion]] = ()
) -> None:
    """Run one worker, and its companions, until SIGTERM/SIGINT."""
    # A worker frozen inside a transaction (SIGSTOP, a paused VM) must not hold its row locks past
    # its lease: the worker taking its solve over would wait on them until it thawed.
    db = Database.from_settings(settings, idle_in_transaction_timeout_s=settings.solve_heartbeat_timeout_s)
    worker = SolveWorker(settings, db, [make(settings, db) for make in companions])
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    try:
        await worker.run()
    finally:
        await db.close()
