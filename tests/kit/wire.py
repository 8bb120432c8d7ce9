"""A PostgreSQL wire-protocol watcher: what a client sends that a transaction-mode pooler breaks.

`TransactionGuard` is a loopback TCP proxy in front of a server (PgBouncer, or PostgreSQL itself).
It forwards every byte unchanged, follows the transaction status the server reports in each
ReadyForQuery, and records a violation when the client sends

- an extended-protocol message (Parse, Bind, Describe, Execute, Close, Flush, Sync) while no explicit
  transaction is open: in transaction mode PgBouncer may hand each Sync-terminated part to another
  server connection, so a Bind can land where its Parse never was (asyncpg with
  statement_cache_size=0 papers over that by parsing again, but a set_config it sends for
  introspection, for one, does not survive the move);
- SQL that leaves state on the server connection past the transaction, whichever connection the
  pooler hands out next: LISTEN, a session-level SET, set_config(..., false), session advisory locks,
  PREPARE, a cursor WITH HOLD.

Simple-protocol statements outside a transaction (`BEGIN; ...`, `COMMIT`, `ROLLBACK`) are fine:
each is one message and one server round trip. Clients must connect with `ssl=disable`: the guard
reads the plain protocol (it forwards an SSLRequest's refusal like any other byte).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy.engine import make_url

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102
_EXTENDED = frozenset(b"PBDECHS")
_CHUNK = 1 << 16

# Statements that outlive their transaction on the server connection. SET LOCAL and SET TRANSACTION
# do not; a session-level SET does, even inside BEGIN ... COMMIT. One exception: asyncpg turns `jit`
# off around its type introspection (the first time a connection meets a type such as an array: pgqueuer's enqueue) and
# sets it back right after, inside the caller's transaction; the extended-protocol rule already
# catches it outside one, where the two halves could land on different server connections.
_SESSION_STATE = re.compile(
    r"""(?ix)
      (?:^|;)\s*LISTEN\b
    | (?:^|;)\s*SET\s+(?!LOCAL\b|TRANSACTION\b|CONSTRAINTS\b)
    | (?:^|;)\s*PREPARE\b
    | \bset_config\s*\((?!\s*'jit'\s*,)[^;]*?,\s*false\s*\)
    | \bpg_(?:try_)?advisory_lock(?:_shared)?\s*\(
    | \bWITH\s+HOLD\b
    """
)


@dataclass(frozen=True)
class Violation:
    reason: str
    message_type: str
    sql: str  # the statement text, when the message carries one (Parse, Query); else ""

    def __str__(self) -> str:
        return f"{self.reason} ({self.message_type!r}): {self.sql[:300]!r}"


@dataclass
class _Stream:
    """One client connection's view: the status of its last ReadyForQuery, the last Parse's text."""

    status: bytes = b""  # b"" before the first ReadyForQuery (authentication)
    last_sql: str = ""


class TransactionGuard:
    """The proxy, on its own event loop in a thread of its own: a test that blocks its loop, or runs
    one in another thread, cannot stall the traffic it watches."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.connections = 0
        self.checked_statements = 0
        self.errors: list[str] = []  # the guard's own failures (a bug here, not in the client)
        self._violations: list[Violation] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="wire-guard", daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, server_url: str) -> str:
        """`server_url` (its database and user), reached through the guard, without TLS."""
        return (
            make_url(server_url)
            .set(host="127.0.0.1", port=self.port, query={"ssl": "disable"})
            .render_as_string(hide_password=False)
        )

    def take_violations(self) -> list[Violation]:
        with self._lock:
            taken, self._violations = self._violations, []
        return taken

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await self._server.wait_closed()

    def _record(self, violation: Violation) -> None:
        with self._lock:
            self._violations.append(violation)

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.upstream_host.startswith("/"):
            return await asyncio.open_unix_connection(f"{self.upstream_host}/.s.PGSQL.{self.upstream_port}")
        return await asyncio.open_connection(self.upstream_host, self.upstream_port)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        server_writer: asyncio.StreamWriter | None = None
        try:
            server_reader, server_writer = await self._open_upstream()
            if not await self._startup(client_reader, server_reader, server_writer, client_writer):
                # A cancel request: the server closes the connection once it has passed the cancel
                # on. Closing ours first is what clients never do, and PgBouncer 1.18 crashes on it
                # (pgbouncer/pgbouncer#801: a freed cancel client still linked to its server).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(server_reader.read(), 10)
                return
            stream = _Stream()
            pumps = [
                asyncio.create_task(self._from_client(client_reader, server_writer, stream)),
                asyncio.create_task(self._from_server(server_reader, client_writer, stream)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                for pump in pumps:
                    with contextlib.suppress(BaseException):
                        await pump
                for pump in pumps:
                    if not pump.cancelled() and pump.exception() is not None:
                        self.errors.append(repr(pump.exception()))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            client_writer.close()
            if server_writer is not None:
                server_writer.close()
            self._tasks.discard(task)

    async def _startup(
        self,
        client: asyncio.StreamReader,
        server: asyncio.StreamReader,
        to_server: asyncio.StreamWriter,
        to_client: asyncio.StreamWriter,
    ) -> bool:
        """The untyped start: SSLRequest / GSSENCRequest (answered with one byte), then a
        StartupMessage (True: typed messages follow) or a CancelRequest (False: nothing follows)."""
        while True:
            header = await client.readexactly(8)
            length, code = struct.unpack("!ii", header)
            to_server.write(header + await client.readexactly(length - 8))
            await to_server.drain()
            if code not in (_SSL_REQUEST, _GSSENC_REQUEST):
                return code != _CANCEL_REQUEST
            answer = await server.readexactly(1)
            if answer != b"N":
                raise ConnectionError("the guard reads plain text only: connect with ssl=disable")
            to_client.write(answer)
            await to_client.drain()

    async def _from_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: _Stream
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                header = await reader.readexactly(5)
                kind, length = header[:1], struct.unpack("!i", header[1:])[0]
                if kind in (b"P", b"Q"):
                    body = await reader.readexactly(length - 4)
                    self._check_sql(kind, body, stream)
                    writer.write(header + body)
                else:
                    self._check_extended(kind, stream)
                    writer.write(header)
                    await _copy(reader, writer, length - 4)
                await writer.drain()
                if kind == b"X":
                    return

    def _check_sql(self, kind: bytes, body: bytes, stream: _Stream) -> None:
        if kind == b"P":
            # Parse: statement name, NUL, query text, NUL, parameter types.
            _name, _, rest = body.partition(b"\0")
            sql = rest.partition(b"\0")[0].decode(errors="replace")
            stream.last_sql = sql
            self._check_extended(kind, stream)
        else:
            sql = body.rstrip(b"\0").decode(errors="replace")
        self.checked_statements += 1
        if _SESSION_STATE.search(sql):
            self._record(Violation("leaves session state on the server connection", kind.decode(), sql))

    def _check_extended(self, kind: bytes, stream: _Stream) -> None:
        if kind[0] in _EXTENDED and stream.status == b"I":
            self._record(
                Violation("extended protocol outside an explicit transaction", kind.decode(), stream.last_sql)
            )

    async def _from_server(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: _Stream
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                header = await reader.readexactly(5)
                kind, length = header[:1], struct.unpack("!i", header[1:])[0]
                if kind == b"Z":
                    status = await reader.readexactly(length - 4)
                    # Recorded before the client sees it: its next message answers this status.
                    stream.status = status[:1]
                    writer.write(header + status)
                else:
                    writer.write(header)
                    await _copy(reader, writer, length - 4)
                await writer.drain()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remaining: int) -> None:
    while remaining > 0:
        chunk = await reader.readexactly(min(remaining, _CHUNK))
        writer.write(chunk)
        remaining -= len(chunk)


@contextlib.contextmanager
def running_guard(upstream_host: str, upstream_port: int) -> Iterator[TransactionGuard]:
    guard = TransactionGuard(upstream_host, upstream_port)
    guard.start()
    try:
        yield guard
    finally:
        guard.stop()
