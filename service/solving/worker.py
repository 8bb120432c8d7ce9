"""The solve worker (`python -m scripts.worker`): takes jobs from the queue and runs each in a process.

Why not pgqueuer's QueueManager: it dispatches every job it picks at once and its per-worker cap is
at least two (max_concurrent_tasks ≥ 2 × batch_size), while a solve holds a CPU core for its whole
time limit. So this loop takes one job whenever one of its SOLVE_WORKERS slots is free, with
pgqueuer's own queue operations (dequeue with FOR UPDATE SKIP LOCKED, heartbeats, completion log).

- Pickup: LISTEN on pgqueuer's channel (the queue connection, a session of its own) wakes the loop
  when a job is queued; an idle poll every IDLE_POLL_S also finds jobs whose worker went silent. A
  lost queue connection is reconnected at once, running solves or not.
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
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.domain.settings import DBSettings
from pgqueuer.models import Job
from pgqueuer.queries import EntrypointExecutionParameter, Queries

from service.config import Settings
from service.core.db import Database, asyncpg_connect_args, classify
from service.solver.outcome import Progress, SolveOutcome
from service.solver.process import run_solve, warm_up
from service.solving.queue import ENTRYPOINT, SolveJob, queries_on
from service.solving.repository import (
    CANCEL_CHANNEL,
    FINAL_STATUSES,
    NotStarted,
    SolutionRepository,
    StartedSolve,
    end_stranded,
    stranded_solves,
)

log = logging.getLogger("routebook.worker")

IDLE_POLL_S = 1.0
# Progress is written (and announced) this often while a solve runs: event streams promise at least
# one progress event a second, and PyVRP's set-up of a large instance reports nothing for seconds.
PROGRESS_INTERVAL_S = 0.5
WORKER_APPLICATION_NAME = "routebook-worker"
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0)
# Closing a job is retried this often (seconds between tries) through a database outage.
CLOSE_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)
INTERRUPTED = "the solve was interrupted too many times"
INTERNAL_ERROR = "the solver failed unexpectedly"
# A job's status in the queue's log, by the status its solve ended with.
_JOB_STATUS = {"succeeded": "successful", "failed": "successful", "cancelled": "canceled"}

# This worker's jobs: their heartbeat, and whether each is still this worker's.
_BEAT = """
    UPDATE pgqueuer SET heartbeat = now()
    WHERE id = ANY($1::bigint[]) AND queue_manager_id = $2 AND status = 'picked'
    RETURNING id
"""


@dataclass
class _Running:
    job: Job
    solve: SolveJob
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    attempt: int | None = None  # the run's number, once started
    lease_lost: bool = False


class SolveWorker:
    def __init__(self, settings: Settings, db: Database) -> None:
        self._settings = settings
        self._db = db
        self._slots = asyncio.Semaphore(settings.solve_concurrency)
        self._running: dict[uuid.UUID, _Running] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._queries: Queries | None = None
        self._heartbeat_timeout = timedelta(seconds=settings.solve_heartbeat_timeout_s)
        # A stranded solve is ended once it has been so for a lease and this much more.
        self._sweep_grace = timedelta(seconds=settings.solve_heartbeat_timeout_s)
        self.queue_manager_id = uuid.uuid4()
        self.ready = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Serve until stop(): reconnects the queue connection as often as the database needs, while
        heartbeats and the sweeper run on their own."""
        await warm_up()
        gc.collect()
        gc.freeze()  # as the web process does: full collections need not walk start-up's objects
        background = [
            asyncio.create_task(self._beat(), name="worker-heartbeat"),
            asyncio.create_task(self._sweep(), name="worker-sweeper"),
        ]
        try:
            failures = 0
            while not self._stopping.is_set():
                try:
                    await self._serve()
                    failures = 0
                except Exception as exc:
                    if classify(exc) is None and not isinstance(exc, ConnectionError):
                        raise
                    log.warning("queue connection lost (%s); reconnecting", type(exc).__name__)
                    delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                    failures += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), delay)
            await self._hand_back_running()
        finally:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _serve(self) -> None:
        url = self._settings.direct_database_url
        assert url is not None
        conn = await asyncpg.connect(
            **asyncpg_connect_args(url),
            timeout=5,
            statement_cache_size=0,
            server_settings={"application_name": WORKER_APPLICATION_NAME},
        )
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            self._queries = Queries(AsyncpgDriver(conn))
            await conn.add_listener(DBSettings().channel, lambda *_: self._wake.set())
            await conn.add_listener(CANCEL_CHANNEL, self._on_cancel)
            self.ready.set()
            log.info(
                "solve worker %s ready (%s slots)", self.queue_manager_id, self._settings.solve_concurrency
            )
            await self._take_jobs(lost)
        finally:
            self.ready.clear()
            self._queries = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

    async def _take_jobs(self, lost: asyncio.Event) -> None:
        assert self._queries is not None
        entrypoints = {ENTRYPOINT: EntrypointExecutionParameter(concurrency_limit=0)}
        while not self._stopping.is_set():
            if not await self._free_slot(lost):
                return
            try:
                self._wake.clear()
                jobs = await self._queries.dequeue(
                    batch_size=1,
                    entrypoints=entrypoints,  # type: ignore[arg-type]
                    queue_manager_id=self.queue_manager_id,  # type: ignore[arg-type]
                    global_concurrency_limit=None,
                    heartbeat_timeout=self._heartbeat_timeout,
                )
            except BaseException:
                self._slots.release()
                raise
            if not jobs or self._stopping.is_set():
                self._slots.release()
                await _first_of(self._wake.wait(), lost.wait(), timeout=IDLE_POLL_S)
                continue
            self._start(jobs[0])

    async def _free_slot(self, lost: asyncio.Event) -> bool:
        """Wait for a free slot; False when the worker is stopping instead. A queue connection lost
        meanwhile raises at once: reconnecting must not wait for a running solve to end."""
        slot = asyncio.ensure_future(self._slots.acquire())
        await _first_of(slot, self._stopping.wait(), lost.wait())
        if slot.done() and not self._stopping.is_set() and not lost.is_set():
            return True
        if slot.done():
            self._slots.release()
        else:
            slot.cancel()
        if lost.is_set() and not self._stopping.is_set():
            raise ConnectionError("queue connection closed")
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

    def _on_cancel(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            running = self._running.get(uuid.UUID(payload))
            if running is not None:
                running.cancel.set()

    async def _beat(self) -> None:
        """Every third of the lease, through the pool (the queue connection may be down, and the
        solves must not wait for it): renew this worker's jobs, and stop the solves of any that is
        no longer this worker's."""
        while True:
            await asyncio.sleep(self._heartbeat_timeout.total_seconds() / 3)
            running = list(self._running.values())
            if not running:
                continue
            try:
                # Privileged: the queue's jobs are the workers', not a user's rows.
                async with self._db.privileged() as conn:
                    rows = await conn.fetch(_BEAT, [item.job.id for item in running], self.queue_manager_id)
            except Exception as exc:
                if classify(exc) is None:
                    log.exception("heartbeat failed")
                else:
                    log.warning("heartbeat not written (%s)", type(exc).__name__)
                continue
            held = {row["id"] for row in rows}
            for item in running:
                if item.job.id not in held and self._running.get(item.solve.solution_id) is item:
                    log.warning(
                        "solve %s: its lease was lost to another worker; stopping it", item.solve.solution_id
                    )
                    item.lease_lost = True
                    item.cancel.set()

    async def _sweep(self) -> None:
        """The second line behind start(): solves that nothing will finish are ended."""
        lease = self._heartbeat_timeout
        while True:
            await asyncio.sleep(lease.total_seconds())
            try:
                async with self._db.as_sweeper() as conn:
                    stranded = await stranded_solves(
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
        try:
            status = await self._solve(running)
            if status is not None:
                await self._close_job(running.job, status)
        except asyncio.CancelledError:
            raise  # shutting down: _hand_back_running re-queues it
        except Exception as exc:
            # A database outage mid-solve: the job is not closed, so once this worker's heartbeat for
            # it stops, another run (here or elsewhere) picks it up again.
            if classify(exc) is None:
                log.exception("solve %s failed in the worker", solve.solution_id)
            else:
                log.warning(
                    "solve %s interrupted: database unavailable (%s)", solve.solution_id, type(exc).__name__
                )
        finally:
            self._running.pop(solve.solution_id, None)
            self._slots.release()

    async def _solve(self, running: _Running) -> str | None:
        """Run the job's solve; the job's status for the queue's log, or None to leave the job alone
        (its lease was lost: it is another worker's now)."""
        solve = running.solve
        async with self._db.as_user(solve.user_id) as conn:
            repo = SolutionRepository(conn, owner=solve.user_id)
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
                return "successful"
        if isinstance(started, NotStarted):
            return _not_started_status(solve, started)
        running.attempt = started.attempts
        log.info("solving %s (attempt %d)", solve.solution_id, started.attempts)
        reporter = _ProgressReporter(self._db, solve, started.attempts, running.cancel)
        ticker = asyncio.create_task(reporter.tick(), name=f"progress-{solve.solution_id}")
        try:
            outcome = await run_solve(
                started.document,
                time_limit_s=float(started.time_limit_s),
                seed=started.seed,
                max_stops=self._settings.solve_max_stops,
                on_progress=reporter.offer,
                cancel=running.cancel,
                grace_s=self._settings.solve_grace_s,
            )
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ticker
        if running.lease_lost:
            return None
        if await self._finish(solve, started, outcome):
            return _JOB_STATUS[outcome.status]
        return await self._settle(running, started)

    async def _settle(self, running: _Running, started: StartedSolve) -> str | None:
        """The run's result was refused: say what became of the solve, and so of its job."""
        solve = running.solve
        async with self._db.as_user(solve.user_id) as conn:
            state = await SolutionRepository(conn, owner=solve.user_id).run_state(solve.solution_id)
        if state is None:
            log.info("solve %s was deleted while it ran", solve.solution_id)
            return "deleted"
        status, attempts = state
        if attempts != started.attempts:
            log.warning(
                "solve %s was started again elsewhere; this run's result is dropped", solve.solution_id
            )
            return None
        return _JOB_STATUS.get(status, "canceled") if status in FINAL_STATUSES else None

    async def _finish(self, solve: SolveJob, started: StartedSolve, outcome: SolveOutcome) -> bool:
        payload = None
        progress = None
        if outcome.payload is not None:
            # The ETag's value the solve was queued at: a client sees the solution is of an older version.
            payload = {**outcome.payload, "scenario_version": str(started.scenario_version)}
            solver = outcome.payload.get("solver", {})
            progress = {
                "elapsed_s": solver.get("runtime_s"),
                "iterations": solver.get("iterations"),
                "best_distance": outcome.payload.get("distance"),
                "feasible": outcome.payload.get("feasible"),
            }
        async with self._db.as_user(solve.user_id) as conn:
            finished = await SolutionRepository(conn, owner=solve.user_id).finish(
                solve.solution_id,
                started.attempts,
                outcome.status,
                payload=payload,
                reason=outcome.reason,
                progress=progress,
            )
        if finished:
            log.info("solve %s %s", solve.solution_id, outcome.status)
        return finished

    async def _close_job(self, job: Job, status: Any) -> None:
        """Move the job to the queue's log, through the pool: the queue connection may be the one
        that is down. Retried through an outage; a job still open after that is found finished by
        its next pick, and closed then as what it was."""
        for delay in (0.0, *CLOSE_DELAYS):
            if delay:
                await asyncio.sleep(delay)
            try:
                # Privileged: the queue's log is the workers'.
                async with self._db.privileged() as conn:
                    await queries_on(conn).log_jobs([(job, status, None)])
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
                    async with self._db.as_user(item.solve.user_id) as tx:
                        repo = SolutionRepository(tx, owner=item.solve.user_id)
                        if not await repo.requeue(item.solve.solution_id, item.attempt):
                            continue  # finished, deleted or started elsewhere meanwhile
                # Privileged: the job goes back to the queue, which is the workers'.
                async with self._db.privileged() as tx:
                    await queries_on(tx).retry_job(item.job, timedelta(0), None)
                log.info("solve %s handed back to the queue", item.solve.solution_id)
        except Exception as exc:
            if classify(exc) is None:
                raise
            log.warning("could not hand every solve back (%s); their lease will expire", type(exc).__name__)


def _not_started_status(solve: SolveJob, not_started: NotStarted) -> str:
    if not_started.why == "cancelled":
        log.info("solve %s was cancelled before a run started; failed", solve.solution_id)
        return "canceled"
    if not_started.why == "gone":
        return "deleted"
    # Finished by an earlier run whose job was never closed (e.g. its connection died just after).
    return _JOB_STATUS.get(not_started.status or "", "canceled")


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
            progress = {
                "elapsed_s": round(time.monotonic() - self._started, 2),
                "iterations": latest.iterations if latest else 0,
                "best_distance": latest.best_distance if latest else None,
                "feasible": latest.feasible if latest else False,
            }
            try:
                async with self._db.as_user(self._solve.user_id) as conn:
                    cancel = await SolutionRepository(conn, owner=self._solve.user_id).report(
                        self._solve.solution_id, self._attempt, progress
                    )
            except Exception as exc:
                log.warning("progress of %s not written (%s)", self._solve.solution_id, type(exc).__name__)
                continue
            if cancel is None or cancel:
                # Cancelled (a missed NOTIFY is caught here), or this run may no longer write: the
                # solve was deleted, or started again elsewhere (run_state tells which, at the end).
                self._cancel.set()


async def serve(settings: Settings) -> None:
    """Run one worker until SIGTERM/SIGINT."""
    db = Database.from_settings(settings)
    worker = SolveWorker(settings, db)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    try:
        await worker.run()
    finally:
        await db.close()
