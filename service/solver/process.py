"""`run_solve()`: one solve in its own OS process, driven from an asyncio worker.

PyVRP holds the CPU (and the GIL) for seconds, so each solve runs in a child started from a
multiprocessing fork server that has imported pyvrp, numpy and pydantic once: a start costs a
fork, not an interpreter and its imports. Parent and child talk over a socket pair with
length-prefixed pickles: the document goes down, progress, best-so-far payloads and the
outcome come up, and any byte sent down later means "stop". The parent reads through an asyncio
stream (non-blocking, no thread parked per solve); the child only polls the socket, so EOF, i.e.
a parent that went away, also stops it.

Three clocks bound a solve: the child's own time limit; CANCEL_GRACE_S after a cancel (PyVRP's
initial construction or an exhaustive search of a new best cannot be interrupted, and on 2,000
stops they take longer than a second, so an unanswered cancel kills the child and keeps the
last best-so-far payload it sent); and the watchdog at time_limit_s + grace_s, which kills it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import pickle
import select
import signal
import socket
import struct
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from multiprocessing.context import ForkServerContext, ForkServerProcess
from typing import Any, Literal

import orjson

from service.solver.outcome import CANCELLED_EARLY, MAX_SEED, Progress, SolutionStatus, SolveOutcome

# What a child needs, imported once by the fork server: the solver, PyVRP, numpy and pydantic. The
# parent (the worker) never imports them itself: it only starts children and reads their answers.
PRELOAD = ["service.solver.process", "service.solver.request", "service.solver.solver"]
# After a cancel the child normally answers within STOP_CHECK_INTERVAL_S; one that has not
# answered by now is in PyVRP's uninterruptible work. Half the caller's 1 s promise, so a loaded
# machine still has room for the kill and for delivering the answer.
CANCEL_GRACE_S = 0.5
# A child that sent its outcome is given this long to exit on its own before it is killed.
_EXIT_PATIENCE_S = 1.0

SOLVER_NICENESS = 10
TIME_LIMIT_EXCEEDED = "time limit exceeded"
PROCESS_DIED = "the solver process ended unexpectedly"
INTERNAL_ERROR = "the solver failed unexpectedly"

_HEADER = struct.Struct("!Q")
_STOP = b"\x00"
Message = tuple[Literal["progress", "best", "outcome"], Any]

_log = logging.getLogger("routebook.solving")

# A child of the fork server re-runs the parent's main module as __mp_main__, as multiprocessing
# does for every child. That module was preloaded under its own name (`_main_module`), so runpy
# warned, once per solve, that it "may result in unpredictable behaviour": the two copies are what
# is meant here (a child uses neither; the preload only makes the re-run cheap). Set at import,
# that is in the fork server too, whose children inherit it.
warnings.filterwarnings(
    "ignore", r"'[\w.]+' found in sys\.modules after import of package", RuntimeWarning, "runpy"
)


@functools.cache
def _context() -> ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    # Effective only before the fork server starts, which the first process start does.
    context.set_forkserver_preload(PRELOAD + _main_module())
    return context


def _main_module() -> list[str]:
    """The parent's main module, when it was started with `python -m`, e.g. service.worker.

    multiprocessing re-runs the parent's main module in every child (as __mp_main__). Imported
    once in the fork server, its own imports are already loaded when a child re-runs it, so the
    re-run costs the module's body, not a second import of FastAPI and SQLAlchemy.
    """
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    name = getattr(spec, "name", None)
    if not isinstance(name, str) or name == "__main__" or name.endswith(".__main__"):
        return []  # `python -m pytest` and the like: multiprocessing re-runs nothing
    return [name]


def start_fork_server() -> None:
    """Launch the fork server now without waiting for it: it imports PRELOAD on another core while
    the caller goes on (the worker, with its own imports and connections). `warm_up()` waits.

    Called from the main thread. The fork server starts with SIGINT ignored: a Ctrl-C (which reaches
    the whole process group) during its imports printed its KeyboardInterrupt traceback, and it
    ignores SIGINT once it runs anyway."""
    _context()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


async def warm_up() -> None:
    """Start the fork server (and its imports) now, e.g. at worker start-up, not on the first job."""
    process = _context().Process(target=_noop, daemon=True)
    await asyncio.to_thread(process.start)
    await _reap(process, patience_s=_EXIT_PATIENCE_S)


def _noop() -> None:
    """A child that only proves the fork server is up."""


async def run_solve(
    document: dict[str, Any] | bytes,
    *,
    time_limit_s: float,
    seed: int,
    max_stops: int,
    on_progress: Callable[[Progress], Awaitable[None]],
    cancel: asyncio.Event,
    grace_s: float,
    replan: tuple[bytes | None, bytes | None] = (None, None),
) -> SolveOutcome:
    """Validate and solve `document` in a child process; see the module docstring for the clocks.

    `replan`: a re-solve's pins and seed routes as JSON text (solver.pins.Replan), parsed by the child.

    `document` may be the request's JSON text (as the worker reads it from PostgreSQL): the child
    parses it, so the event loop pays neither the parse nor a pickle of the tree.

    `grace_s` must cover the work around the search: the child's start, parsing, the matrices
    and PyVRP's set-up (about 3 s for 2,000 stops). Progress reaches `on_progress` newest first:
    while one call runs, newer reports replace older ones. If the awaiting task is cancelled,
    the child is killed and CancelledError propagates.
    """
    if not 0 <= seed <= MAX_SEED or not time_limit_s > 0 or grace_s < 0:
        raise ValueError("seed, time_limit_s or grace_s out of range")
    if cancel.is_set():
        return SolveOutcome.failed(CANCELLED_EARLY)  # no process for a job cancelled in the queue
    deadline = asyncio.get_running_loop().time() + time_limit_s + grace_s
    parent_end, child_end = socket.socketpair()
    process = _context().Process(
        target=_child_main,
        args=(child_end, time_limit_s, seed, max_stops, replan),
        daemon=True,
        name="routebook-solve",
    )
    conversation = _Conversation(parent_end, on_progress)
    try:
        try:
            # Blocking for a few milliseconds (the fork server's handshake), so off the loop;
            # the arguments are small because the document goes over the socket.
            await asyncio.to_thread(process.start)
        finally:
            child_end.close()
        return await conversation.run(document, cancel, deadline)
    finally:
        parent_end.close()
        # A child still starting when the task was cancelled is not reaped here; it finds its
        # socket closed and exits by itself. Only a child that answered may exit in its own time.
        await _reap(process, patience_s=_EXIT_PATIENCE_S if conversation.answered else 0)


async def _reap(process: ForkServerProcess, *, patience_s: float) -> None:
    """Wait up to patience_s for the child to exit, then kill it; either way collect it."""
    if process.pid is None:
        return
    # kill() first, synchronously: if this task is cancelled again while waiting, the child is
    # dead already. A child that is still solving is never given patience.
    if patience_s == 0 or not await _readable(process.sentinel, patience_s):
        process.kill()
        await _readable(process.sentinel, 5.0)
    process.join(timeout=0)  # the sentinel is readable: this does not block
    if process.exitcode is None:
        _log.error("solver process %s survived SIGKILL", process.pid)
        return
    if process.exitcode != 0:
        _log.info("solver process %s ended with exit code %s", process.pid, process.exitcode)
    process.close()


async def _readable(fd: int, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        async with asyncio.timeout(timeout_s):
            await ready
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


class _Conversation:
    """The parent's side of one solve: send the document, read until the outcome, or give up."""

    def __init__(self, sock: socket.socket, on_progress: Callable[[Progress], Awaitable[None]]) -> None:
        self._sock = sock
        self._progress = _ProgressForwarder(on_progress)
        self._best: dict[str, Any] | None = None
        self.answered = False

    async def run(
        self, document: dict[str, Any] | bytes, cancel: asyncio.Event, deadline: float
    ) -> SolveOutcome:
        reader, writer = await asyncio.open_connection(sock=self._sock)
        # One pickle of the document on the loop (~70 ms for a 2,001² matrix as a dict, a copy as
        # JSON bytes); the transport then writes it as the child reads, without blocking.
        body = pickle.dumps(document, protocol=pickle.HIGHEST_PROTOCOL)
        writer.write(_HEADER.pack(len(body)) + body)
        del body
        answer = asyncio.create_task(self._read_outcome(reader))
        cancelled = asyncio.create_task(cancel.wait())
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.wait({answer, cancelled}, return_when=asyncio.FIRST_COMPLETED)
                if not answer.done():
                    writer.write(_STOP)
                    await asyncio.wait({answer}, timeout=CANCEL_GRACE_S)
            if not answer.done():
                outcome = self._abandoned()
            elif (answered := answer.result()) is not None:
                self.answered = True
                outcome = answered
            else:
                outcome = SolveOutcome.failed(PROCESS_DIED)
            await self._progress.flush()
            return outcome
        except TimeoutError:
            return SolveOutcome.failed(TIME_LIMIT_EXCEEDED)
        finally:
            answer.cancel()
            cancelled.cancel()
            self._progress.close()
            # abort(), not close(): drop any unsent rest of the document and let go of the
            # socket at once, before the caller closes it.
            writer.transport.abort()

    async def _read_outcome(self, reader: asyncio.StreamReader) -> SolveOutcome | None:
        """The child's outcome, or None if it ended without one."""
        try:
            while True:
                (length,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
                kind, body = pickle.loads(await reader.readexactly(length))  # noqa: S301 (our own child)
                if kind == "outcome":
                    outcome: SolveOutcome = body
                    return outcome
                if kind == "best":
                    self._best = body
                else:
                    self._progress.offer(body)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    def _abandoned(self) -> SolveOutcome:
        if self._best is None:
            return SolveOutcome.failed(CANCELLED_EARLY)
        return SolveOutcome(status=SolutionStatus.CANCELLED, payload=self._best)


class _ProgressForwarder:
    """Hands the newest progress to the callback, one call at a time.

    Reports that arrive during a call replace each other, so a slow callback (a database write)
    never stops the parent from reading, and the child never blocks on a full socket.
    """

    def __init__(self, callback: Callable[[Progress], Awaitable[None]]) -> None:
        self._callback = callback
        self._latest: Progress | None = None
        self._task: asyncio.Task[None] | None = None

    def offer(self, progress: Progress) -> None:
        self._latest = progress
        if self._task is None or self._task.done():
            if self._task is not None:
                self._task.result()  # a failed callback fails the solve
            self._task = asyncio.create_task(self._deliver())

    async def _deliver(self) -> None:
        while self._latest is not None:
            progress, self._latest = self._latest, None
            await self._callback(progress)

    async def flush(self) -> None:
        if self._task is not None:
            await self._task

    def close(self) -> None:
        if self._task is None:
            return
        if not self._task.done():
            self._task.cancel()
        elif not self._task.cancelled():
            self._task.exception()  # retrieved: another error is already on its way out


def _child_main(
    sock: socket.socket,
    time_limit_s: float,
    seed: int,
    max_stops: int,
    replan: tuple[bytes | None, bytes | None] = (None, None),
) -> None:
    started_ns = time.time_ns()
    # Ctrl-C in the worker's terminal reaches its whole process group; the parent decides
    # when this child ends, through the socket or a kill.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A solve may take every core for minutes; on a host it shares with the API (make run, a small
    # deployment) the requests come first. Measured: /health p99 under two solves 24-64 → 7-28 ms.
    os.nice(SOLVER_NICENESS)
    with sock:
        try:
            document = pickle.loads(_receive(sock))  # noqa: S301 (our own parent)
        except EOFError:
            return  # the parent gave up before sending anything
        outcome = _solve_document(sock, document, time_limit_s, seed, max_stops, replan)
        # The parent's trace shows this process's life from these two readings (solving/worker.py).
        outcome = dataclasses.replace(outcome, ran_ns=(started_ns, time.time_ns()))
        with contextlib.suppress(OSError):  # the parent may be gone
            _send(sock, ("outcome", outcome))


def _solve_document(
    sock: socket.socket,
    document: object,
    time_limit_s: float,
    seed: int,
    max_stops: int,
    replan: tuple[bytes | None, bytes | None] = (None, None),
) -> SolveOutcome:
    # Loaded already in a child of the fork server (PRELOAD): these imports cost a dict lookup.
    from service.solver.pins import Replan
    from service.solver.request import SolveRequestInvalid, parse_solve_request
    from service.solver.solver import solve

    if isinstance(document, bytes):
        try:
            document = orjson.loads(document)
        except orjson.JSONDecodeError:
            return SolveOutcome.failed("the request is not valid JSON")
    try:
        request = parse_solve_request(document, max_stops=max_stops)
    except SolveRequestInvalid as exc:
        first = exc.errors[0]
        return SolveOutcome.failed(
            f"the request is not solvable: {first['pointer'] or '/'}: {first['msg']}"[:200]
        )
    del document  # the request holds what is needed; a 2,001² matrix need not be held twice
    try:
        pins, routes = (None if text is None else orjson.loads(text) for text in replan)
        plan = Replan.from_json(pins, routes)
    except (orjson.JSONDecodeError, ValueError):
        return SolveOutcome.failed("the pins or the solution to start from are not valid")
    try:
        return solve(
            request,
            time_limit_s=time_limit_s,
            seed=seed,
            on_progress=lambda progress: _send(sock, ("progress", progress)),
            should_stop=lambda: bool(select.select([sock], [], [], 0)[0]),
            on_best=lambda payload: _send(sock, ("best", payload)),
            replan=plan,
        )
    except ConnectionError:
        # The parent went away mid-report; nobody is left to tell.
        return SolveOutcome.failed(INTERNAL_ERROR)
    except Exception:
        _log.exception("solve failed in the solver process")
        return SolveOutcome.failed(INTERNAL_ERROR)


def _send(sock: socket.socket, message: Message) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(body)) + body)


def _receive(sock: socket.socket) -> bytes:
    (length,) = _HEADER.unpack(_receive_exactly(sock, _HEADER.size))
    return _receive_exactly(sock, length)


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    # Unbuffered on purpose: a buffered reader could swallow the stop byte that should_stop()
    # looks for with select().
    buffer = bytearray(size)
    view = memoryview(buffer)
    while view:
        received = sock.recv_into(view)
        if received == 0:
            raise EOFError("socket closed")
        view = view[received:]
    return bytes(buffer)
