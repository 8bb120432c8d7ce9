"""A real solve worker (`python -m scripts.worker`) as a subprocess, for tests that run solves end
to end: started against a test database, ready once it has logged so, stopped (or killed) at the end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READY = "ready ("


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def wait_exit(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while (code := self.process.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {self.pid} did not exit within {timeout} s")
            await asyncio.sleep(0.05)
        return code


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
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: ASYNC220 (Popen returns at once; nothing waits on it here)
            [sys.executable, "-m", "scripts.worker"],
            cwd=ROOT,
            env=environment,
            stdout=log_file,
            stderr=log_file,
        )
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
