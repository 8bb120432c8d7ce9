"""Database failures seen from one process: connections lost under a transaction (terminated
backends, on the shared test database — only this module's own backends die), and a pool with no
connection to spare. Each must leave `Database` as a 503 problem (`DatabaseUnavailable`,
`DatabaseBusy`), never as a driver error, and never cost the pool a slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from service.core.db import (
    Connection,
    Database,
    DatabaseBusy,
    DatabaseUnavailable,
    TransactionRolledBack,
    asyncpg_connect_args,
    classify,
)
from service.core.errors import ServiceUnavailable
from service.deps import app_state
from tests.conftest import AppFactory, client_for
from tests.kit.waiting import eventually
from tests.webhooks.conftest import CLERK, CLERK_SECRET, clerk_signed, clerk_user_event

API = "/api/v1"
PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"), DatabaseUnavailable),
        (asyncpg.exceptions.ConnectionFailureError("lost"), DatabaseUnavailable),
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), DatabaseUnavailable),
        (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"), DatabaseUnavailable),
        (asyncpg.exceptions.IdleSessionTimeoutError("idle-session timeout"), DatabaseUnavailable),
        (asyncpg.exceptions.TooManyConnectionsError("too many clients"), DatabaseBusy),
        (
            asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
            DatabaseUnavailable,
        ),
        (
            asyncpg.InterfaceError("cannot perform operation: another operation is cancelling"),
            DatabaseUnavailable,
        ),
        (ConnectionResetError(104, "Connection reset by peer"), DatabaseUnavailable),
        (ConnectionRefusedError(111, "Connection refused"), DatabaseUnavailable),
        (TimeoutError(), DatabaseUnavailable),
        # Our own mistakes or the client's, never "try again later":
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), None),
        (asyncpg.exceptions.DivisionByZeroError("division by zero"), None),
        (asyncpg.InterfaceError("cannot call Connection.fetch(): connection has been released"), None),
        (ValueError("not a database error"), None),
    ],
)
def test_classify(error: BaseException, expected: type[ServiceUnavailable] | None) -> None:
    assert classify(error) is expected


@pytest.fixture
def own_name() -> str:
    """The application_name of `own_db`'s connections, so a test terminates only those."""
    return f"routebook-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def own_db(migrated_url: str, own_name: str) -> AsyncIterator[Database]:
    # Two slots and a short wait: a slot a lost connection failed to give back shows up as DatabaseBusy.
    db = Database(migrated_url, max_size=2, acquire_timeout=2.0, application_name=own_name)
    yield db
    await db.close()


def lost(conn: Connection) -> bool:
    """asyncpg has noticed: a lost pooled connection's proxy is detached and refuses every call."""
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        return True


async def terminate(url: str, pid: int) -> None:
    admin = await asyncpg.connect(**asyncpg_connect_args(url))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def test_a_connection_lost_between_statements_is_database_unavailable(
    own_db: Database, migrated_url: str
) -> None:
    for _ in range(3):  # more losses than the pool has slots: each one gives its slot back
        with pytest.raises(DatabaseUnavailable):
            async with own_db.privileged() as conn:
                await terminate(migrated_url, await conn.fetchval("SELECT pg_backend_pid()"))
                await eventually(lambda: _async(lost(conn)))
                await conn.fetchval("SELECT 1")
    async with own_db.privileged() as conn:  # the pool replaced it
        assert await conn.fetchval("SELECT 1") == 1


async def test_a_connection_lost_before_commit_is_database_unavailable(
    own_db: Database, migrated_url: str
) -> None:
    with pytest.raises(DatabaseUnavailable):
        async with own_db.as_user(uuid.uuid4()) as conn:
            await terminate(migrated_url, await conn.fetchval("SELECT pg_backend_pid()"))
            await eventually(lambda: _async(lost(conn)))
    async with own_db.privileged() as conn:
        assert await conn.fetchval("SELECT 1") == 1


async def test_a_connection_lost_mid_query_is_database_unavailable(
    own_db: Database, migrated_url: str
) -> None:
    with pytest.raises(DatabaseUnavailable):
        async with own_db.privileged() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            query = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(30)"))
            admin = await asyncpg.connect(**asyncpg_connect_args(migrated_url))
            try:
                running = "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND query LIKE '%pg_sleep%'"
                await eventually(lambda: _truthy(admin.fetchval(running, pid)))
                await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            finally:
                await admin.close()
            await query


async def test_connections_lost_under_concurrent_transactions_give_their_slots_back(
    own_db: Database, own_name: str, migrated_url: str
) -> None:
    outcomes: Counter[str] = Counter()
    stop = asyncio.Event()

    async def worker() -> None:
        while not stop.is_set():
            try:
                async with own_db.privileged() as conn:
                    await conn.fetchval("SELECT pg_sleep(0.002)")
                    await conn.fetchval("SELECT 1")
                outcomes["ok"] += 1
            except DatabaseUnavailable:
                outcomes["unavailable"] += 1

    workers = [asyncio.create_task(worker()) for _ in range(6)]  # three per slot: they queue
    admin = await asyncpg.connect(**asyncpg_connect_args(migrated_url))
    try:
        for _ in range(20):
            await eventually(beyond(outcomes.total, outcomes.total() + 2))  # between losses, progress
            await admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                own_name,
            )
    finally:
        stop.set()
        await asyncio.gather(*workers)  # a leaked slot: a worker's DatabaseBusy fails the test here
        await admin.close()
    assert outcomes["unavailable"] > 0
    # Every slot is free: as many transactions at once as the pool has connections.
    async with own_db.privileged() as first, own_db.privileged() as second:
        assert await first.fetchval("SELECT 1") == await second.fetchval("SELECT 1") == 1


async def test_a_swallowed_statement_error_is_never_acknowledged_as_committed(own_db: Database) -> None:
    # PostgreSQL answers COMMIT of a failed transaction with ROLLBACK, not an error.
    with pytest.raises(TransactionRolledBack):
        async with own_db.privileged() as conn:
            with contextlib.suppress(asyncpg.DivisionByZeroError):
                await conn.fetchval("SELECT 1 / 0")
    async with own_db.privileged() as conn:  # the connection went back to the pool clean
        assert await conn.fetchval("SELECT 1") == 1


async def _truthy(value: Awaitable[object]) -> bool:
    return bool(await value)


# --- no connection to spare ---------------------------------------------------------------------


async def test_an_exhausted_pool_is_503_busy_with_retry_after(app_factory: AppFactory) -> None:
    # Two connections, a short checkout wait: the test holds both in open transactions.
    settings = {"db_pool_size": 1, "db_max_overflow": 1, "db_pool_timeout": 0.2}
    async with app_factory(**settings, clerk_webhook_secret=CLERK_SECRET) as app:
        async with client_for(app) as client:
            # The listener has loaded (its own query done), so a known caller is served from the cache.
            await eventually(lambda: _async(app_state(app).identity.live))
            alice = {"Authorization": f"Bearer {app_state(app).dev_issuer.mint(subject='busy', email=None)}"}
            assert (await client.get(f"{API}/users/me", headers=alice)).status_code == 200
            newcomer = {
                "Authorization": f"Bearer {app_state(app).dev_issuer.mint(subject='late', email=None)}"
            }
            body, hook_headers = clerk_signed(clerk_user_event("user_busy", kind="user.created"))
            db = app_state(app).db
            async with db.privileged(), db.privileged():
                answers = {
                    "planning": await client.get(f"{API}/sessions", headers=alice),
                    "new user": await client.get(f"{API}/users/me", headers=newcomer),
                    "webhook": await client.post(CLERK, content=body, headers=hook_headers),
                    "ready": await client.get("/ready"),
                }
            after = await client.get(f"{API}/sessions", headers=alice)
    for path, response in answers.items():
        assert response.status_code == 503, (path, response.text)
        assert response.headers["content-type"] == PROBLEM
        assert int(response.headers["retry-after"]) >= 1
        detail = response.json()["detail"]
        assert "busy" in detail and "unavailable" not in detail, (path, detail)
    assert after.status_code == 200


async def _async(value: bool) -> bool:
    return value


def beyond(count: Callable[[], int], floor: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return count() > floor

    return check


async def test_a_request_cancelled_at_any_moment_gives_its_connection_back(own_db: Database) -> None:
    """A client that disconnects cancels its request wherever it is: in checkout, in BEGIN, in a
    statement, in COMMIT. Each of those moments must give the connection back to the pool."""

    async def transaction() -> None:
        async with own_db.privileged() as conn:
            await conn.fetchval("SELECT 1")

    async with own_db.privileged():  # the pool's connections exist: checkout is not a connect
        async with own_db.privileged():
            pass
    for ticks in range(40):  # event-loop turns before the cancel: every await point gets its turn
        task = asyncio.create_task(transaction())
        for _ in range(ticks):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # Every slot is free: as many transactions at once as the pool has connections.
    async with own_db.privileged() as first, own_db.privileged() as second:
        assert await first.fetchval("SELECT 1") == await second.fetchval("SELECT 1") == 1
