"""The connection pool and the ways in: `as_member()` (under RLS) and `privileged()` (across workspaces).

The app talks to PostgreSQL through asyncpg directly. SQLModel tables still define the schema (for
Alembic); statements are plain SQL in the repositories, which keeps a request at its round trips
(BEGIN with the RLS scope, the query, COMMIT) without an ORM session around Core statements.

Every way a database can be unavailable — refused or dropped connections, a server shutting down or
restarting, a pool with no free connection — is classified here, once, and leaves as a 503 problem
with Retry-After (`DatabaseUnavailable`, `DatabaseBusy`), whichever route it happened on.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeAlias

import asyncpg
import uuid_utils
from asyncpg.pool import PoolConnectionProxy
from sqlalchemy import Column, DateTime, func
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from service.core import metrics
from service.core.errors import ServiceUnavailable

log = logging.getLogger("routebook.db")

# With metrics on, how often the pool's connections in use and waiters are reported.
POOL_REPORT_INTERVAL_S = 1.0

# Stable constraint and index names, so migrations can name what they alter or drop.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = SQLModel.metadata

# The non-owner role request work runs as, so row-level security binds even when DATABASE_URL
# logs in as a superuser or as the tables' owner. Created by migration 0002.
APP_ROLE = "routebook_app"
# The role that reads every user's active solves, and nothing else (migration 0010).
SWEEPER_ROLE = "routebook_sweeper"
# The role that finds due outbound webhook deliveries of every workspace and claims them (migration 0011).
DISPATCHER_ROLE = "routebook_dispatcher"

# A pooled connection (what the transactions yield) or a plain one (tests, the listener).
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
QueryLogger = Callable[[Any], None]
Proxy: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

# SQLSTATEs of a server that cannot serve us right now: 57P01 admin shutdown (also a terminated
# backend), 57P02 crash shutdown, 57P03 cannot connect now (starting up, shutting down, recovery),
# 57P05 a session closed by idle_session_timeout; class 08 is the connection-exception class.
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "57P05"})
_BUSY_STATES = frozenset({"53300"})  # too_many_connections
# asyncpg reports a connection that is gone, or left mid-operation by a cancelled request, as an
# InterfaceError with one of these messages; other InterfaceErrors are programming errors.
_LOST_CONNECTION_MESSAGES = (
    "connection is closed",
    "another operation is in progress",
    "another operation is cancelling",
)


def new_id() -> uuid.UUID:
    """Time-ordered UUIDv7: new rows land at the right edge of the primary-key index."""
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


def utcnow() -> datetime:
    return datetime.now(UTC)


def timestamp_column(*, nullable: bool = False, server_default: bool = True) -> Column[datetime]:
    return Column(
        DateTime(timezone=True),
        nullable=nullable,
        server_default=func.now() if server_default else None,
    )


class TransactionRolledBack(RuntimeError):
    """COMMIT found the transaction already failed: a statement's error was swallowed in the block."""


class DatabaseUnavailable(ServiceUnavailable):
    detail = "The database is unavailable; try again shortly."
    cause = "database_unavailable"

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": "2"})


class DatabaseBusy(ServiceUnavailable):
    detail = "The service is busy; try again shortly."
    cause = "database_pool_exhausted"

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": "1"})


def classify(exc: BaseException) -> type[ServiceUnavailable] | None:
    """DatabaseUnavailable or DatabaseBusy when `exc` says the database cannot serve us; else None."""
    if isinstance(exc, DatabaseUnavailable | DatabaseBusy):
        return type(exc)
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", "") or ""
        if state in _BUSY_STATES:
            return DatabaseBusy
        if state.startswith("08") or state in _UNAVAILABLE_STATES:
            return DatabaseUnavailable
        return None
    if isinstance(exc, asyncpg.InterfaceError):
        message = str(exc)
        return DatabaseUnavailable if any(m in message for m in _LOST_CONNECTION_MESSAGES) else None
    if isinstance(exc, asyncpg.exceptions.InternalClientError | OSError | TimeoutError):
        # Refused, reset, unreachable, or a connection attempt that timed out.
        return DatabaseUnavailable
    return None


def asyncpg_connect_args(url: str) -> dict[str, Any]:
    """asyncpg.connect() keyword arguments for a `postgresql+asyncpg://` URL (host may be a socket dir)."""
    parsed = make_url(url)
    host = parsed.query.get("host") or parsed.host
    port = parsed.query.get("port") or parsed.port
    args: dict[str, Any] = {
        "host": host if isinstance(host, str) else None,
        "port": int(port) if isinstance(port, str | int) else None,
        "user": parsed.username,
        "password": parsed.password,
        "database": parsed.database,
    }
    ssl = parsed.query.get("ssl")
    if isinstance(ssl, str):
        args["ssl"] = ssl  # asyncpg takes libpq's mode names: require, verify-full, ...
    return args


def _attached(conn: Proxy) -> bool:
    """False once asyncpg has taken a connection back from us. When a pooled connection is lost
    (the server shut down, the backend was terminated), asyncpg returns its slot to the pool at
    once and detaches our proxy, whose every method then raises InterfaceError."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False


async def _reset(conn: Connection) -> None:
    # Every transaction here is closed before release and sets only transaction-local state, so the
    # pool's default reset (a round trip of RESET ALL, UNLISTEN, ...) buys nothing; a transaction
    # left open by a cancelled request is rolled back so the next user never inherits it.
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class Database:
    """One pool per process (`AppState.db`); every statement runs in one of its transactions."""

    def __init__(
        self,
        url: str,
        *,
        max_size: int = 20,
        acquire_timeout: float = 10.0,
        statement_cache_size: int = 100,
        application_name: str = "routebook",
        idle_in_transaction_timeout_s: float | None = None,
    ) -> None:
        self._connect_args = asyncpg_connect_args(url)
        # Set in every transaction (transaction-local, so safe behind a transaction-mode pooler): a
        # process frozen inside a transaction (SIGSTOP, a paused VM) then has it ended by the server
        # after this long, and the row locks it held do not block the others for good.
        self._begin_settings = (
            ""
            if idle_in_transaction_timeout_s is None
            else "SELECT set_config('idle_in_transaction_session_timeout', "
            f"'{round(idle_in_transaction_timeout_s * 1000)}', true); "
        )
        self._max_size = max_size
        self._acquire_timeout = acquire_timeout
        self._statement_cache_size = statement_cache_size
        self._application_name = application_name
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._query_loggers: list[QueryLogger] = []
        # Counted per transaction in plain integers and reported to the metrics once a second: a
        # metric write per acquire and release cost more than the counting.
        self._in_use = 0
        self._waiting = 0
        self._pool_reporter: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls, settings: Any, url: str | None = None, *, idle_in_transaction_timeout_s: float | None = None
    ) -> Database:
        database_url = url or settings.database_url
        if database_url is None:
            raise RuntimeError("DATABASE_URL is not set (make run / make test start an embedded PostgreSQL)")
        return cls(
            database_url,
            max_size=settings.db_pool_size + settings.db_max_overflow,
            acquire_timeout=settings.db_pool_timeout,
            statement_cache_size=settings.db_statement_cache_size,
            idle_in_transaction_timeout_s=idle_in_transaction_timeout_s,
        )

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    # min_size=0: the app starts (and /ready answers 503) while the database is down.
                    self._pool = await asyncpg.create_pool(
                        **self._connect_args,
                        min_size=0,
                        max_size=self._max_size,
                        # Idle connections are closed after this long, so a server-side restart or a
                        # pooler's idle timeout is met with fresh connections rather than dead ones.
                        max_inactive_connection_lifetime=300.0,
                        reset=_reset,
                        timeout=5,
                        statement_cache_size=self._statement_cache_size,
                        server_settings={"application_name": self._application_name},
                    )
                    if metrics.enabled() and self._pool_reporter is None:
                        self._pool_reporter = asyncio.create_task(self._report_pool(), name="pool-metrics")
        return self._pool

    async def _report_pool(self) -> None:
        while True:
            metrics.pool_usage(self._in_use, self._waiting)
            await asyncio.sleep(POOL_REPORT_INTERVAL_S)

    @asynccontextmanager
    async def privileged(self) -> AsyncIterator[Proxy]:
        """The dangerous path: the login role, which row-level security does not scope to a user.

        Only for work that must see across users (user sync, the admin listing, the queue, stream
        tickets, housekeeping); every call site says in one line why. Request work uses `as_user`.
        """
        async with self._transaction(
            f"BEGIN; {self._begin_settings}" if self._begin_settings else "BEGIN"
        ) as conn:
            yield conn

    def as_member(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> AbstractAsyncContextManager[Proxy]:
        """Request work of one member in one workspace: runs as the app role, so RLS admits only that
        workspace's rows, and only while `user_id` is a member of it (writes: member or admin).

        BEGIN and the scope travel in one simple-protocol message (one round trip); the settings are
        transaction-local, so a pooled connection carries nothing to the next request.
        """
        if not isinstance(workspace_id, uuid.UUID) or not isinstance(user_id, uuid.UUID):
            raise TypeError("as_member needs a workspace id and a user id")
        begin = (
            f"BEGIN; {self._begin_settings}SELECT set_config('app.user_id', '{user_id}', true), "
            f"set_config('app.workspace_id', '{workspace_id}', true), "
            f"set_config('role', '{APP_ROLE}', true)"
        )
        # The transaction itself, not wrapped in a generator of its own: every request enters it.
        return self._transaction(begin)

    def as_user(self, user_id: uuid.UUID) -> AbstractAsyncContextManager[Proxy]:
        """`as_member` in the user's personal workspace (its id is the user's): their own rows."""
        return self.as_member(user_id, user_id)

    @asynccontextmanager
    async def as_worker(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> AsyncIterator[Proxy]:
        """A solve worker's writes to the solve it holds: the login role bound to the solve's workspace,
        whatever the creator's membership is by now — a solve
        that was queued by a member is finished even if they were removed or made a viewer since."""
        if not isinstance(workspace_id, uuid.UUID) or not isinstance(user_id, uuid.UUID):
            raise TypeError("as_worker needs a workspace id and a user id")
        begin = (
            f"BEGIN; {self._begin_settings}SELECT set_config('app.user_id', '{user_id}', true), "
            f"set_config('app.workspace_id', '{workspace_id}', true)"
        )
        async with self._transaction(begin) as conn:
            yield conn

    @asynccontextmanager
    async def as_workspace(self, workspace_id: uuid.UUID) -> AsyncIterator[Proxy]:
        """Work of one workspace that no member does: the outbound dispatcher reading and recording
        one delivery. The login role bound to `workspace_id` alone by the tables' system policies
        (like `as_worker`, without a member): a delivery is sent whoever is left in the workspace."""
        if not isinstance(workspace_id, uuid.UUID):
            raise TypeError("as_workspace needs a workspace id")
        begin = f"BEGIN; {self._begin_settings}SELECT set_config('app.workspace_id', '{workspace_id}', true)"
        async with self._transaction(begin) as conn:
            yield conn

    @asynccontextmanager
    async def as_sweeper(self) -> AsyncIterator[Proxy]:
        """Read-only and across users: every user's pending and running solves, and the queue — all
        the sweeper role can read. One of two narrow ways past the per-user scope (with
        `as_dispatcher`) besides `privileged()`."""
        begin = f"BEGIN READ ONLY; {self._begin_settings}SELECT set_config('role', '{SWEEPER_ROLE}', true)"
        async with self._transaction(begin) as conn:
            yield conn

    @asynccontextmanager
    async def as_dispatcher(self) -> AsyncIterator[Proxy]:
        """Across workspaces, and narrow: which outbound deliveries are due and whose they are, a
        claim on them, and the purge of week-old bodies — all the dispatcher role may touch. What is
        sent, and what came back, is read and written in the delivery's workspace (`as_workspace`)."""
        begin = f"BEGIN; {self._begin_settings}SELECT set_config('role', '{DISPATCHER_ROLE}', true)"
        async with self._transaction(begin) as conn:
            yield conn

    @asynccontextmanager
    async def _transaction(self, begin: str) -> AsyncIterator[Proxy]:
        pool, conn = await self._begin(begin)
        try:
            try:
                yield conn
            except BaseException:
                await self._rollback(conn)
                raise
            if await conn.execute("COMMIT") != "COMMIT":
                # PostgreSQL answers COMMIT of a failed transaction with ROLLBACK and no error: a
                # statement failed (or was cancelled) and its error was swallowed inside the block.
                # Nothing was written, so the request must not be acknowledged; a bug of ours.
                raise TransactionRolledBack("the transaction was rolled back at COMMIT")
        except Exception as exc:
            unavailable = classify(exc)
            if unavailable is None and isinstance(exc, asyncpg.InterfaceError) and not _attached(conn):
                # The connection was lost between two statements: asyncpg detached our proxy, and
                # the next statement failed with "released back to the pool" rather than a
                # connection error. Only here is that message known to mean a lost connection;
                # anywhere else it is a statement sent after its transaction ended (a bug).
                unavailable = DatabaseUnavailable
            if unavailable is None:
                raise
            log.warning("database unavailable: %s", type(exc).__name__)
            raise unavailable() from exc
        finally:
            await self._release(pool, conn)

    async def _begin(self, begin: str) -> tuple[asyncpg.Pool, Proxy]:
        """A pooled connection inside a new transaction. A connection found dead when the transaction
        starts is replaced once: nothing ran on it yet, so retrying is safe for any request."""
        for attempt in (1, 2):
            pool, conn = await self._acquire()
            try:
                await conn.execute(begin)
                return pool, conn
            except BaseException as exc:
                # Also on cancellation (a client that disconnected): without this the connection
                # was never given back, and enough disconnects left the pool with none to lend.
                await self._release(pool, conn, discard=True)
                if not isinstance(exc, Exception):
                    raise
                unavailable = classify(exc)
                if unavailable is None:
                    raise
                if attempt == 2:
                    log.warning("database unavailable: %s", type(exc).__name__)
                    raise unavailable() from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _acquire(self) -> tuple[asyncpg.Pool, Proxy]:
        self._waiting += 1
        try:
            pool = await self._get_pool()
            conn = await pool.acquire(timeout=self._acquire_timeout)
        except TimeoutError as exc:
            # Every connection is in use for longer than DB_POOL_TIMEOUT: we are busy, not down.
            if self._exhausted():
                raise DatabaseBusy() from exc
            raise DatabaseUnavailable() from exc
        except Exception as exc:
            unavailable = classify(exc)
            if unavailable is None:
                raise
            log.warning("database unavailable: %s", type(exc).__name__)
            raise unavailable() from exc
        finally:
            self._waiting -= 1
        self._in_use += 1
        for logger in self._query_loggers:
            conn.add_query_logger(logger)
        return pool, conn

    async def _rollback(self, conn: Proxy) -> None:
        if not _attached(conn) or not conn.is_in_transaction():
            return  # lost (nothing to roll back: the server ended the transaction) or already over
        try:
            await conn.execute("ROLLBACK")
        except Exception as exc:
            # The connection is unusable (its error already propagates); _release discards it.
            log.debug("rollback failed: %s", type(exc).__name__)

    async def _release(self, pool: asyncpg.Pool, conn: Proxy, *, discard: bool = False) -> None:
        self._in_use -= 1
        try:
            for logger in self._query_loggers:
                conn.remove_query_logger(logger)
            # A closed connection may still hold its pool slot (a protocol abort skips asyncpg's
            # cleanup): terminate() runs that cleanup, which gives the slot back.
            if discard or conn.is_closed() or conn.is_in_transaction():
                conn.terminate()
        except asyncpg.InterfaceError:
            return  # detached: asyncpg already gave the lost connection's slot back to the pool
        try:
            await pool.release(conn)
        except Exception as exc:
            log.debug("release failed: %s", type(exc).__name__)

    async def check(self, timeout: float = 2.0) -> type[ServiceUnavailable] | None:
        """None when the database answers within `timeout`; else the problem a request would get
        (busy when every pooled connection is in use, unavailable otherwise)."""
        try:
            # Privileged: a probe that reads no row.
            async with asyncio.timeout(timeout), self.privileged() as conn:
                await conn.execute("SELECT 1")
            return None
        except TimeoutError:
            # Waiting longer than `timeout` for a connection the pool did not have to spare, or for
            # a server that does not answer.
            return DatabaseBusy if self._exhausted() else DatabaseUnavailable
        except DatabaseBusy:
            return DatabaseBusy
        except Exception as exc:
            # Whatever the cause (refused, shutting down, a bad URL option), the answer is "not ready".
            log.warning("database check failed: %s", type(exc.__cause__ or exc).__name__)
            return DatabaseUnavailable

    def _exhausted(self) -> bool:
        return self._pool is not None and self._pool.get_size() >= self._max_size

    @asynccontextmanager
    async def observe(self, logger: QueryLogger) -> AsyncIterator[None]:
        """Call `logger` with every statement sent while the block runs (tests count and inspect them)."""
        self._query_loggers.append(logger)
        try:
            yield
        finally:
            self._query_loggers.remove(logger)

    async def close(self) -> None:
        """Close every connection; the next transaction opens a new pool."""
        reporter, self._pool_reporter = self._pool_reporter, None
        if reporter is not None:
            reporter.cancel()
            metrics.pool_usage(self._in_use, self._waiting)
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(10):
                    await pool.close()
            except TimeoutError:
                pool.terminate()
