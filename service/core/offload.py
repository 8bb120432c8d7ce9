"""CPU-bound work kept off the event loop: a small pool of worker processes.

Why processes: the work that needs it (parsing request bodies of megabytes with orjson, ~56 ms per
5 MB here) holds the GIL, so a thread would stall the loop just the same. The pool starts its
processes on first use (the spawn method: forking a process that runs an event loop and threads is
unsafe), so an app that never takes a large body never starts one.

A worker that dies (killed by the OOM killer, say) breaks the whole pool. The pool is then
replaced; work that had not been handed to the dead pool is resubmitted, but work that was running
in it is answered 503, never retried here or inline: the input itself may be what killed it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from service.core.errors import ServiceUnavailable

log = logging.getLogger("routebook.offload")

T = TypeVar("T")


def _ignore_interrupts() -> None:
    """In each worker: Ctrl-C reaches the whole process group, and a worker interrupted while it
    waits for work printed a KeyboardInterrupt traceback. The parent ends its workers (close())."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Offload:
    """`await offload.run(fn, *args)`: fn(*args) in a worker process (fn and args picklable)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _current(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_ignore_interrupts,
            )
        return self._pool

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self._pool is broken:
            log.error(
                "the offload pool broke (a worker died, or its result was unreadable); starting a new one"
            )
            self._pool = None
            broken.shutdown(wait=False, cancel_futures=True)

    def _submit(self, fn: Callable[..., T], *args: Any) -> tuple[ProcessPoolExecutor, Future[T]]:
        pool = self._current()
        try:
            return pool, pool.submit(fn, *args)
        except BrokenProcessPool:
            # Broken before this work reached it: safe to hand to a fresh pool.
            self._replace(pool)
            pool = self._current()
            return pool, pool.submit(fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        pool, future = self._submit(fn, *args)
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            self._replace(pool)
            raise ServiceUnavailable(
                "The request could not be processed; try again shortly.",
                headers={"Retry-After": "1"},
                cause="offload_failed",
            ) from None

    async def close(self) -> None:
        """Stop the workers (waiting for work in progress, dropping work not yet started)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
