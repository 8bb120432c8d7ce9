"""A real solve worker (`python -m service.worker`) as a subprocess, for tests that run solves end
to end: started against a test database, ready once it has logged so, stopped (or killed) at the end.

`SharedWorker` is one such process per test process, lent to every test that only needs *a* worker
(and settled between them); tests that kill, stop or count workers start their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from service.core.db import asyncpg_connect_args
from service.solving.queue import SolveJob
from service.solving.repository import CANCEL_CHANNEL
from tests.kit.launcher import LaunchedProcess, launch
from tests.kit.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
READY = "ready ("


@dataclass
class WorkerProcess:
    process: LaunchedProcess
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def solves(self) -> list[psutil.Process]:
        """The processes running this worker's solves: the children of its fork server. (The
        worker's own children are the fork server and multiprocessing's resource tracker.)"""
        worker = psutil.Process(self.pid)
        return [child for child in worker.children(recursive=True) if child.ppid() != self.pid]

    async def running_solve(self, timeout: float = 30.0) -> psutil.Process:
        """The one solve this (one-slot) worker runs, once its process has started."""
        await eventually(self._runs_one_solve, timeout=timeout)
        (solve,) = self.solves()
        return solve

    async def _runs_one_solve(self) -> bool:
        return len(self.solves()) == 1

    async def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return await asyncio.wait_for(self.process.wait_async(), timeout)
        except TimeoutError:
            raise AssertionError(f"worker {self.pid} did not exit within {timeout} s") from None


async def _wait_ready(worker: WorkerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while READY not in worker.log():
        if worker.process.poll() is not None:
            raise AssertionError(f"worker exited with {worker.process.returncode}:\n{worker.log()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"worker not ready within {timeout} s:\n{worker.log()[-3000:]}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def solve_worker(
    database_url: str, log_dir: Path, *, slots: int = 1, heartbeat_timeout_s: float = 15.0, **env: str
) -> AsyncIterator[WorkerProcess]:
    """A worker on `database_url` with `slots` concurrent solves, stopped with SIGTERM at the end."""
    log_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (a test's temp dir: instant)
    log_path = log_dir / f"worker-{time.monotonic_ns()}.log"
    environment = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": database_url,
        "SOLVE_WORKERS": str(slots),
        "SOLVE_HEARTBEAT_TIMEOUT_S": str(heartbeat_timeout_s),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "console",
        **env,
    }
    if "DATABASE_DIRECT_URL" not in env:
        environment.pop("DATABASE_DIRECT_URL", None)
    process = launch("service.worker", environment, log_path)
    worker = WorkerProcess(process, log_path)
    try:
        await _wait_ready(worker, timeout=90)
        yield worker
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await worker.wait_exit(30)
            except AssertionError:
                process.kill()
                process.wait(10)


class SharedWorker:
    """One worker for many tests: started on first use (again, should it have died), and settled
    after each test — its queued jobs dropped, its running solves cancelled as a client would, and
    nothing returned until it is idle — so no test's solve reaches the next test. Between the tests
    that use it, it is frozen (SIGSTOP): a test without a worker sees its pending solves stay pending.
    """

    SETTLE_TIMEOUT_S = 30.0

    def __init__(self, database_url: str, log_dir: Path, **options: Any) -> None:
        self._url = database_url
        self._log_dir = log_dir
        self._options = options
        self._stack: contextlib.AsyncExitStack | None = None
        self._process: WorkerProcess | None = None

    async def acquire(self) -> WorkerProcess:
        if self._process is not None and self._process.process.poll() is not None:
            await self.close()  # it died (or a test stopped it): start another
        if self._process is None:
            self._stack = contextlib.AsyncExitStack()
            self._process = await self._stack.enter_async_context(
                solve_worker(self._url, self._log_dir, **self._options)
            )
        else:
            self._process.signal(signal.SIGCONT)
        return self._process

    async def settle(self) -> None:
        """Back to idle; a worker that cannot get there in SETTLE_TIMEOUT_S is stopped instead."""
        if self._process is None:
            return
        conn = await asyncpg.connect(**asyncpg_connect_args(self._url), timeout=10)
        try:
            await conn.execute("DELETE FROM pgqueuer WHERE status = 'queued'")
            for row in await conn.fetch("SELECT payload FROM pgqueuer WHERE status = 'picked'"):
                await _cancel(conn, SolveJob.decode(row["payload"]))
            deadline = time.monotonic() + self.SETTLE_TIMEOUT_S
            while await conn.fetchval("SELECT count(*) FROM pgqueuer"):
                if time.monotonic() > deadline:
                    await self.close()
                    return
                await asyncio.sleep(0.05)
            if not await self._freeze_between_transactions(conn):
                await self.close()
        finally:
            await conn.close()

    async def _freeze_between_transactions(self, conn: asyncpg.Connection) -> bool:
        """SIGSTOP the worker at a moment none of its statements is under way: one frozen inside a
        transaction (its idle poll's dequeue, say) would hold its locks until the end of the run,
        and the next test's TRUNCATE would wait for them forever. False if no such moment came."""
        assert self._process is not None
        for _ in range(200):
            if self._process.process.poll() is not None:
                return False
            self._process.signal(signal.SIGSTOP)
            await _stopped(self._process.pid)
            in_transaction = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
            )
            if not in_transaction:
                return True
            self._process.signal(signal.SIGCONT)
            await asyncio.sleep(0.01)
        return False

    async def close(self) -> None:
        process, stack, self._stack, self._process = self._process, self._stack, None, None
        if process is not None and process.process.poll() is None:
            process.signal(signal.SIGCONT)  # a frozen process would not act on the SIGTERM that follows
        if stack is not None:
            await stack.aclose()


async def _stopped(pid: int) -> None:
    """Until the kernel has stopped `pid` (state T): a SIGSTOP is delivered, not applied, by kill()."""
    stat = Path(f"/proc/{pid}/stat")
    async with asyncio.timeout(10):
        # The state follows the command name, which is in parentheses and may hold spaces.
        while stat.read_text().rpartition(")")[2].split()[0] not in {"T", "t", "Z"}:  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(0.001)


async def _cancel(conn: asyncpg.Connection, job: SolveJob) -> None:
    """What POST …/cancel does to a running solve, as the login role under the owner's RLS scope."""
    async with conn.transaction():
        await conn.execute(
            "SELECT set_config('app.user_id', $1, true), set_config('app.workspace_id', $1, true)",
            str(job.user_id),
        )
        await conn.execute(
            "UPDATE solutions SET cancel_requested = true WHERE user_id = $1 AND id = $2",
            job.user_id,
            job.solution_id,
        )
        await conn.execute("SELECT pg_notify($1, $2)", CANCEL_CHANNEL, str(job.solution_id))
