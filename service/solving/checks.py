"""Where a solve request's check runs: inline when the document is small, else in a lane of its own.

Validating a request is CPU work proportional to its size: microseconds for a few stops, most of a
second for 2,000 stops and their matrix. A small document is checked on the event loop, where its
check costs less than sending it to a process would. A large one goes to SOLVE_CHECK_WORKERS
processes of its own (not the pool that parses other large bodies), one check per user at a time
and the users in turn (asyncio's locks are FIFO), so one user's pile of large requests never sits
between another user and the lane. A check that cannot start within SOLVE_CHECK_WAIT_S is a 503
with Retry-After. No database connection is held meanwhile: the route reads the document, lets go
of its connection, then waits here (see routes.solve).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from service.core.errors import ServiceUnavailable
from service.core.offload import Offload
from service.solver.matrix import build_matrices
from service.solver.pins import parse_pins, pin_issues
from service.solver.request import MAX_ERRORS, RequestIssue, SolveRequestInvalid, parse_solve_request


class ChecksBusy(ServiceUnavailable):
    detail = "Too many large solve requests are being checked; try again shortly."
    cause = "solve_checks_busy"

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": "2"})


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a solve cannot be queued: its scenario's `request`, or the solve's `pins` (pointers into
    the one or the other)."""

    where: Literal["request", "pins"]
    errors: list[RequestIssue]


def solve_errors(document: bytes, max_stops: int, pins: list[dict[str, Any]] | None = None) -> Refusal | None:
    """Why the request is not solvable or the pins cannot hold in it, or None (at most MAX_ERRORS
    errors). The pins are checked only against a solvable request."""
    try:
        request = parse_solve_request(orjson.loads(document), max_stops=max_stops)
    except SolveRequestInvalid as exc:
        return Refusal("request", exc.errors)
    if not pins:
        return None
    issues = pin_issues(request, parse_pins(pins), lambda: build_matrices(request), max_errors=MAX_ERRORS)
    return Refusal("pins", issues) if issues else None


# Pinned routes are driven along the matrices: a few pins cost microseconds, many go to the lane.
_INLINE_PINS = 20


@dataclass
class _Turn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    requests: int = 0  # holding or waiting for the lock


class SolveChecks:
    """The solve requests' checks of one process."""

    def __init__(self, *, inline_max_bytes: int, workers: int, wait_s: float) -> None:
        self._inline_max_bytes = inline_max_bytes
        self._lane = Offload(workers)  # its processes start on the first large check
        self._slots = asyncio.Semaphore(workers)
        self._wait_s = wait_s
        self._turns: dict[uuid.UUID, _Turn] = {}

    async def errors(
        self, user_id: uuid.UUID, document: bytes, max_stops: int, pins: list[dict[str, Any]] | None = None
    ) -> Refusal | None:
        if len(document) <= self._inline_max_bytes and len(pins or ()) <= _INLINE_PINS:
            return solve_errors(document, max_stops, pins)
        async with self._turn(user_id):
            return await self._lane.run(solve_errors, document, max_stops, pins)

    @asynccontextmanager
    async def _turn(self, user_id: uuid.UUID) -> AsyncIterator[None]:
        """The user's turn (their own large checks one at a time), then a free process of the lane."""
        turn = self._turns.setdefault(user_id, _Turn())
        turn.requests += 1
        try:
            async with AsyncExitStack() as held:
                try:
                    async with asyncio.timeout(self._wait_s):
                        await held.enter_async_context(turn.lock)
                        await held.enter_async_context(self._slots)
                except TimeoutError:
                    raise ChecksBusy() from None
                yield
        finally:
            turn.requests -= 1
            if not turn.requests:
                del self._turns[user_id]

    async def close(self) -> None:
        await self._lane.close()
