"""Behind a transaction-mode pooler: the wire guard catches what pooling breaks, the app sends none
of it, and a real PgBouncer's server connections carry nothing from one request to the next."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from service.config import Settings
from service.core.db import asyncpg_connect_args
from service.deps import app_state
from service.main import create_app
from tests.conftest import client_for
from tests.kit.pgbouncer import PgBouncer, pgbouncer_binary, running_pgbouncer
from tests.kit.sql import SqlAdmin
from tests.kit.wire import TransactionGuard, running_guard

# A PgBouncer of its own in front of the run's server: the serial group runs one test at a time.
pytestmark = pytest.mark.serial

API = "/api/v1"

needs_pgbouncer = pytest.mark.skipif(
    pgbouncer_binary() is None, reason="pgbouncer is not installed (apt-get install pgbouncer)"
)


@pytest.fixture
def guard(migrated_url: str) -> Iterator[TransactionGuard]:
    """A guard of its own, straight in front of the test server (no PgBouncer needed)."""
    args = asyncpg_connect_args(migrated_url)
    with running_guard(args["host"] or "127.0.0.1", args["port"] or 5432) as watcher:
        yield watcher


async def connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(**asyncpg_connect_args(url), statement_cache_size=0)


async def test_the_guard_reports_what_transaction_pooling_breaks(
    guard: TransactionGuard, migrated_url: str
) -> None:
    conn = await connect(guard.url(migrated_url))
    try:
        async with conn.transaction():
            assert await conn.fetchval("SELECT $1::int", 1) == 1
            await conn.execute("SET LOCAL statement_timeout = 0")
            await conn.execute("SELECT set_config('app.user_id', $1, true)", "x")
        await conn.execute("BEGIN; SELECT 1; COMMIT")  # simple protocol: one message, one round trip
        assert guard.take_violations() == []

        assert await conn.fetchval("SELECT $1::int", 2) == 2  # Parse/Bind outside a transaction
        async with conn.transaction():
            await conn.execute("SET statement_timeout = 0")  # outlives the transaction
            await conn.execute("SELECT set_config('app.user_id', 'x', false)")
            await conn.execute("SELECT pg_advisory_lock(42)")
            await conn.execute("SELECT pg_advisory_unlock(42)")
        await conn.execute("LISTEN routebook_guard_test")
        await conn.execute("UNLISTEN *")
    finally:
        await conn.close()
    reasons = [(v.reason.split()[0], v.message_type, v.sql) for v in guard.take_violations()]
    assert ("extended", "P", "SELECT $1::int") in reasons
    flagged = {sql for kind, _, sql in reasons if kind == "leaves"}
    assert flagged == {
        "SET statement_timeout = 0",
        "SELECT set_config('app.user_id', 'x', false)",
        "SELECT pg_advisory_lock(42)",
        "LISTEN routebook_guard_test",
    }


@asynccontextmanager
async def app_at(settings_for: Callable[..., Settings], **overrides: Any) -> AsyncIterator[FastAPI]:
    app = create_app(settings_for(**overrides))
    async with app.router.lifespan_context(app):
        yield app


async def planning_tour(app: FastAPI) -> uuid.UUID:
    """Every kind of request the planning API and identity make; returns the caller's user id."""
    token = app_state(app).dev_issuer.mint(subject="pooled-user", email="pooled@example.com")
    headers = {"Authorization": f"Bearer {token}"}
    async with client_for(app) as http:

        async def call(method: str, path: str, expected: int, **kwargs: Any) -> Any:
            response = await http.request(method, f"{API}{path}", headers=headers, **kwargs)
            assert response.status_code == expected, response.text
            return response.json() if response.content else None

        me = await call("GET", "/users/me", 200)
        session = await call("POST", "/sessions", 201, json={"name": "pooled"})
        sid = session["id"]
        scenario = await call(
            "POST", f"/sessions/{sid}/scenarios", 201, json={"name": "s", "request": {"stops": []}}
        )
        cid = scenario["id"]
        await call("GET", f"/sessions/{sid}/scenarios?limit=1", 200)
        await call("GET", f"/scenarios/{cid}", 200)
        await call("PATCH", f"/scenarios/{cid}", 200, json={"name": "renamed", "request": {"stops": [1]}})
        await call("POST", f"/scenarios/{cid}/reset", 200)
        solution = await call("POST", f"/scenarios/{cid}/solutions", 201, json={"status": "succeeded"})
        await call("GET", f"/solutions/{solution['id']}", 200)
        await call("GET", f"/scenarios/{cid}/solutions", 200)
        await call("GET", "/sessions", 200)
        await call("DELETE", f"/sessions/{sid}", 204)
        await call("GET", f"/scenarios/{cid}", 404)
        ready = await http.get("/ready")
        assert ready.status_code == 200, ready.text
    return uuid.UUID(me["id"])


async def test_the_apps_requests_are_safe_for_transaction_pooling(
    clean_db: SqlAdmin, settings_for: Callable[..., Settings], guard: TransactionGuard, migrated_url: str
) -> None:
    pooled = guard.url(migrated_url)
    async with app_at(
        settings_for, database_url=pooled, database_direct_url=migrated_url, db_statement_cache_size=0
    ) as app:
        await planning_tour(app)
    assert guard.connections >= 1 and guard.checked_statements >= 15  # the traffic went through the guard
    assert guard.take_violations() == []


@pytest.fixture
def single_server_connection(migrated_url: str) -> Iterator[PgBouncer]:
    """PgBouncer with ONE server connection: every client's transaction runs on the same backend."""
    with running_pgbouncer(migrated_url, pool_size=1) as pgbouncer:
        yield pgbouncer


@needs_pgbouncer
async def test_pgbouncer_pools_transactions(single_server_connection: PgBouncer, migrated_url: str) -> None:
    url = single_server_connection.url(migrated_url)
    first, second = await connect(url), await connect(url)
    try:
        pids = set()
        for conn in (first, second, first):
            async with conn.transaction():
                pids.add(await conn.fetchval("SELECT pg_backend_pid()"))
        assert len(pids) == 1  # two clients, one server connection: transaction pooling
    finally:
        await first.close()
        await second.close()


@needs_pgbouncer
async def test_requests_leave_nothing_on_the_pooled_server_connection(
    clean_db: SqlAdmin,
    settings_for: Callable[..., Settings],
    single_server_connection: PgBouncer,
    migrated_url: str,
) -> None:
    pooled = single_server_connection.url(migrated_url)
    async with app_at(
        settings_for, database_url=pooled, database_direct_url=migrated_url, db_statement_cache_size=0
    ) as app:
        await planning_tour(app)
        # The next client of that one server connection, while the app still holds its pool.
        conn = await connect(pooled)
        try:
            async with conn.transaction():
                state = await conn.fetchrow(
                    """
                    SELECT current_user = session_user AS own_role,
                           COALESCE(current_setting('app.user_id', true), '') AS user_id,
                           (SELECT count(*) FROM pg_prepared_statements) AS prepared,
                           (SELECT count(*) FROM pg_listening_channels()) AS channels,
                           (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS advisory
                    """
                )
        finally:
            await conn.close()
    assert dict(state) == {"own_role": True, "user_id": "", "prepared": 0, "channels": 0, "advisory": 0}
