"""The solve worker (`python -m scripts.worker`): takes jobs from the queue and runs each in a process.

Why not pgqueuer's QueueManager: it dispatches every job it picks at once and its per-worker cap is
at least two (max_concurrent_tasks ≥ 2 × batch_size), while a solve holds a CPU core for its whole
time limit. So this loop takes one job whenever one of its SOLVE_WORKERS slots is free, with
pgqueuer's own queue operations (dequeue with FOR UPDATE SKIP LOCKED, heartbeats, completion log).

- Pickup: LISTEN on pgqueuer's channel wakes the loop when a job is queued; an idle poll every
  IDLE_POLL_S also finds jobs whose worker went silent.
- Crash safety (lease by heartbeat): every SOLVE_HEARTBEAT_TIMEOUT_S / 3 the worker beats for the
  jobs it runs; a job whose heartbeat is older than the timeout (its worker was killed) is picked
  again by any worker and re-run from the snapshot, up to SOLVE_MAX_ATTEMPTS runs, then `failed`.
- Cancellation: a NOTIFY on CANCEL_CHANNEL (and, should one be missed, the cancel flag returned by
  every progress write) stops the solve, which keeps its best so far.
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
from service.db import Database, asyncpg_connect_args, classify
from service.solving.outcome import Progress, SolveOutcome
from service.solving.process import run_solve, warm_up
from service.solving.queue import ENTRYPOINT, SolveJob
from service.solving.repository import CANCEL_CHANNEL, SolveRepository

log = logging.getLogger("routebook.worker")

IDLE_POLL_S = 1.0
# Progress is written (and announced) this often while a solve runs: event streams promise at least
# one progress event a second, and PyVRP's set-up of a large instance reports nothing for seconds.
PROGRESS_INTERVAL_S = 0.5
WORKER_APPLICATION_NAME = "routebook-worker"
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0)
INTERRUPTED = "the solve was interrupted too many times"
INTERNAL_ERROR = "the solver failed unexpectedly"


@dataclass
class _Running:
    job: Job
    solve: SolveJob
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


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
        self.queue_manager_id = uuid.uuid4()
        self.ready = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Serve until stop(): reconnects the queue connection as often as the database needs."""
        await warm_up()
        gc.collect()
        gc.freeze()  # as the web process does: full collections need not walk start-up's objects
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._serve()
                failures = 0
            except Exception as exc:
                if classify(exc) is None and not isinstance(exc, ConnectionError):
                    raise
                log.warning("queue connection lost (%s); reconnecting", type(exc).__name__)
                failures += 1
                with contextlib.suppress(TimeoutError):
                    delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                    await asyncio.wait_for(self._stopping.wait(), delay)
        await self._hand_back_running()

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
            heartbeat = asyncio.create_task(self._beat(), name="worker-heartbeat")
            self.ready.set()
            log.info(
                "solve worker %s ready (%s slots)", self.queue_manager_id, self._settings.solve_concurrency
            )
            try:
                await self._take_jobs(lost)
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await heartbeat
        finally:
            self.ready.clear()
            self._queries = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

    async def _take_jobs(self, lost: asyncio.Event) -> None:
        assert self._queries is not None
        entrypoints = {ENTRYPOINT: EntrypointExecutionParameter(concurrency_limit=0)}
        while not self._stopping.is_set():
            if lost.is_set():
                raise ConnectionError("queue connection closed")
            if not await self._free_slot():
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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)
                continue
            self._start(jobs[0])

    async def _free_slot(self) -> bool:
        """Wait for a free slot; False when the worker is stopping instead."""
        slot = asyncio.ensure_future(self._slots.acquire())
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({slot, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
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

    def _on_cancel(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            running = self._running.get(uuid.UUID(payload))
            if running is not None:
                running.cancel.set()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_timeout.total_seconds() / 3)
            ids = [running.job.id for running in self._running.values()]
            if ids and self._queries is not None:
                await self._queries.update_heartbeat(ids)

    async def _run_job(self, running: _Running) -> None:
        solve = running.solve
        try:
            status = await self._solve(running)
            await self._log_job(running.job, "canceled" if status == "cancelled" else "successful")
        except asyncio.CancelledError:
            raise  # shutting down: _hand_back_running re-queues it
        except Exception:
            # A database outage mid-solve: the job is not logged, so once this worker's heartbeat for
            # it stops, another run (here or elsewhere) picks it up again.
            log.exception("solve %s failed in the worker", solve.solution_id)
        finally:
            self._running.pop(solve.solution_id, None)
            self._slots.release()

    async def _solve(self, running: _Running) -> str:
        solve = running.solve
        async with self._db.as_user(solve.user_id) as conn:
            repo = SolveRepository(conn, owner=solve.user_id)
            started = await repo.start(solve.solution_id)
            if started is not None and started.attempts > self._settings.solve_max_attempts:
                await repo.finish(
                    solve.solution_id, "failed", payload=None, reason=INTERRUPTED, progress=None
                )
                return "failed"
        if started is None:
            return "cancelled"  # deleted, cancelled or finished before this run started
        log.info("solving %s (attempt %d)", solve.solution_id, started.attempts)
        reporter = _ProgressReporter(self._db, solve, running.cancel)
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
        await self._finish(solve, outcome, started.scenario_version)
        return outcome.status

    async def _finish(self, solve: SolveJob, outcome: SolveOutcome, scenario_version: int) -> None:
        payload = None
        progress = None
        if outcome.payload is not None:
            # The ETag's value the solve was queued at: a client sees the solution is of an older version.
            payload = {**outcome.payload, "scenario_version": str(scenario_version)}
            solver = outcome.payload.get("solver", {})
            progress = {
                "elapsed_s": solver.get("runtime_s"),
                "iterations": solver.get("iterations"),
                "best_distance": outcome.payload.get("distance"),
                "feasible": outcome.payload.get("feasible"),
            }
        async with self._db.as_user(solve.user_id) as conn:
            await SolveRepository(conn, owner=solve.user_id).finish(
                solve.solution_id, outcome.status, payload=payload, reason=outcome.reason, progress=progress
            )
        log.info("solve %s %s", solve.solution_id, outcome.status)

    async def _log_job(self, job: Job, status: Any) -> None:
        if self._queries is not None:
            await self._queries.log_jobs([(job, status, None)])

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
        if not running:
            return
        url = self._settings.direct_database_url
        assert url is not None
        try:
            conn = await asyncpg.connect(**asyncpg_connect_args(url), timeout=5, statement_cache_size=0)
        except Exception as exc:
            log.warning("could not hand %d solves back (%s); their lease will expire", len(running), exc)
            return
        try:
            queries = Queries(AsyncpgDriver(conn))
            for item in running:
                async with self._db.as_user(item.solve.user_id) as tx:
                    await SolveRepository(tx, owner=item.solve.user_id).requeue(item.solve.solution_id)
                await queries.retry_job(item.job, timedelta(0), None)
                log.info("solve %s handed back to the queue", item.solve.solution_id)
        finally:
            await conn.close()


class _ProgressReporter:
    """Writes the newest progress every PROGRESS_INTERVAL_S, with the wall-clock elapsed time, so a
    stream hears from a solve even while PyVRP is busy setting up."""

    def __init__(self, db: Database, solve: SolveJob, cancel: asyncio.Event) -> None:
        self._db = db
        self._solve = solve
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
                    cancel = await SolveRepository(conn, owner=self._solve.user_id).report(
                        self._solve.solution_id, progress
                    )
            except Exception as exc:
                log.warning("progress of %s not written (%s)", self._solve.solution_id, type(exc).__name__)
                continue
            if cancel is None or cancel:
                # Cancelled (a missed NOTIFY is caught here), or the row is gone (user deleted).
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
