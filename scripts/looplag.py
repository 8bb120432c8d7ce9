"""The API app (service.main) with a sampler of its own event loop's lag, for scripts/bench_loop.py.

`uvicorn scripts.looplag:sampled_app --factory` serves the app unchanged, plus one coroutine on its
loop: sleep SAMPLE_S, note how late it woke, again. A turn of the loop that took long (a callback
working on a big body) makes the sampler late by that much; so does the process being off the CPU.
To tell them apart, each sample also records what the loop's thread did meanwhile, from the
kernel's accounting of that thread (/proc/thread-self/schedstat):

  cpu     time it ran on a CPU: the loop executing callbacks (the app's, the driver's, the sampler's)
  queued  time it was runnable but waiting for a CPU: the machine's other processes ran instead
  other   the rest beyond the sleep itself: blocked (the GIL held by another thread of the process,
          a blocking system call made from a callback)

A late wake-up that is mostly `cpu` is the app's own doing; mostly `queued` is the machine's.

GET /__bench/loop-lag answers the samples taken since the previous such request (JSON: a list of
[woke, lag, cpu, queued] in seconds, one per wake-up; `woke` on time.perf_counter's clock,
CLOCK_MONOTONIC, which other processes read too) and starts a new series; no other request sees the
wrapper. Not part of the service: the bench's server only.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import orjson

SAMPLE_S = 0.005
PATH = "/__bench/loop-lag"
# Milliseconds: on asyncio's own loop (uvloop has no debug mode), each callback running longer than
# this is logged by asyncio ("Executing <Handle or Task> took 0.052 seconds").
SLOW_CALLBACK_ENV = "LOOPLAG_SLOW_CALLBACK_MS"


def _schedstat(fd: int) -> tuple[int, int]:
    """(ns on a CPU, ns runnable but waiting for one) of the thread whose schedstat `fd` is."""
    on_cpu, queued, _ = os.pread(fd, 128, 0).split()
    return int(on_cpu), int(queued)


class LagSampler:
    def __init__(self) -> None:
        self.samples: list[tuple[float, float, float, float]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            if slow := os.environ.get(SLOW_CALLBACK_ENV):
                # asyncio's debug mode logs each callback that ran longer (uvloop does not).
                loop.set_debug(True)
                loop.slow_callback_duration = float(slow) / 1000
            self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        # Opened on the loop's thread: thread-self is the thread that opens it.
        fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        try:
            clock = time.perf_counter
            cpu, queued = _schedstat(fd)
            while True:
                before = clock()
                await asyncio.sleep(SAMPLE_S)
                woke = clock()
                cpu_now, queued_now = _schedstat(fd)
                self.samples.append(
                    (woke, woke - before - SAMPLE_S, (cpu_now - cpu) / 1e9, (queued_now - queued) / 1e9)
                )
                cpu, queued = cpu_now, queued_now
        finally:
            os.close(fd)

    def take(self) -> list[tuple[float, float, float, float]]:
        samples, self.samples = self.samples, []
        return samples


def sampled_app() -> Any:
    """service.main's app, with the sampler started by the first call (the lifespan's)."""
    from service.main import app as inner

    sampler = LagSampler()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        sampler.start()
        if scope["type"] == "http" and scope["path"] == PATH:
            body = orjson.dumps(sampler.take())
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await inner(scope, receive, send)

    return app
