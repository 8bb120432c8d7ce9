"""One user's large solve request never delays another's: asserted by order, not by time.

The process that checks large requests is frozen (SIGSTOP), so a large check is held in progress
for as long as the test wants; what must still be answered meanwhile is. The app runs in process
with a small threshold (a 60-stop request counts as large) and a small pool of connections.
"""

from __future__ import annotations

import asyncio
import copy
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from starlette.types import Message, Receive, Scope, Send

from service.deps import app_state
from service.solver.example import EXAMPLE_REQUEST
from tests.conftest import AppFactory
from tests.kit.instances import synthetic_request
from tests.kit.sql import SqlAdmin, scope_rls_to
from tests.kit.waiting import eventually
from tests.planning.conftest import Caller, sign_in
from tests.solving.conftest import new_scenario

SETTINGS = {
    "solve_inline_check_bytes": 4096,
    "solve_check_workers": 1,
    "db_pool_size": 4,
    "db_max_overflow": 4,
}
# Answers that must come while a large check is frozen; far above any real answer's time, and
# never reached when the service is fair.
PATIENCE_S = 30


def large_valid() -> dict[str, Any]:
    """60 stops with their matrix: some 20 kB, a large check here."""
    return synthetic_request(60, explicit_matrix=True)


def large_invalid() -> dict[str, Any]:
    """A large request refused for its depot reference, found once everything else was checked."""
    document = large_valid()
    document["vehicle_types"][0]["depot"] = "nowhere"
    return document


class CountingApp:
    """The app, counting the solve requests whose body it has read."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.solves_read = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                self.solves_read += scope["path"].endswith("/solve")
            return message

        await self.app(scope, counted, send)


@asynccontextmanager
async def fair_app(app_factory: AppFactory) -> AsyncIterator[tuple[FastAPI, CountingApp, httpx.AsyncClient]]:
    async with app_factory(**SETTINGS) as app:
        counting = CountingApp(app)
        transport = httpx.ASGITransport(app=counting)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as http:
            yield app, counting, http


@contextmanager
def frozen(pids: set[int]) -> Iterator[None]:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


async def checking_processes(caller: Caller, scenario_id: str) -> set[int]:
    """The processes that check large solve requests: started by a first large check (refused)."""
    before = {child.pid for child in multiprocessing.active_children()}
    response = await caller.call("POST", f"/scenarios/{scenario_id}/solve", {})
    assert response.status_code == 422, response.text
    started = {child.pid for child in multiprocessing.active_children()} - before
    assert started, "the large check ran in no process of its own"
    return {pid for pid in started if pid is not None}


async def held_in_the_database(db: SqlAdmin) -> list[str]:
    """What the app holds in the database: open transactions and advisory locks, described."""
    async with db.transaction() as session:
        rows = await session.execute(
            text(
                "SELECT 'transaction, ' || state FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = 'routebook' "
                "AND state LIKE 'idle in transaction%' "
                "UNION ALL SELECT 'advisory lock' FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND d.datname = current_database()"
            )
        )
        return [row[0] for row in rows]


async def test_another_users_small_solve_is_answered_while_a_large_check_is_held(
    app_factory: AppFactory, clean_db: SqlAdmin
) -> None:
    async with fair_app(app_factory) as (app, _, http):
        alice, bob = await sign_in(app, http, "alice"), await sign_in(app, http, "bob")
        checkers = await checking_processes(alice, await new_scenario(alice, large_invalid()))
        large = await new_scenario(alice, large_valid())
        small = await new_scenario(bob, copy.deepcopy(EXAMPLE_REQUEST))
        reads: list[Any] = []

        def scenario_read(query: Any) -> None:
            if "original_request" in query.query and query.args and query.args[0] == alice.user_id:
                reads.append(query)

        with frozen(checkers):
            async with app_state(app).db.observe(scenario_read):
                held = asyncio.create_task(alice.call("POST", f"/scenarios/{large}/solve", {}))
                await eventually(lambda: _true(bool(reads)), timeout=PATIENCE_S)  # alice's check is due
            answered = await asyncio.wait_for(bob.call("POST", f"/scenarios/{small}/solve", {}), PATIENCE_S)
            assert answered.status_code == 202, answered.text

            # Nothing is held in the database while alice's check waits for its CPU, so alice may
            # even edit the very scenario being checked.
            # Her checkers stay frozen throughout, so a transaction held across the check would
            # never end: waited on, not read once, as the read's own transaction may still be
            # committing when bob is answered (seen behind PgBouncer on a loaded machine).
            async def nothing_held() -> bool:
                return await held_in_the_database(clean_db) == []

            await eventually(nothing_held, timeout=PATIENCE_S)
            edited = await asyncio.wait_for(
                alice.call("PATCH", f"/scenarios/{large}", {"request": copy.deepcopy(EXAMPLE_REQUEST)}),
                PATIENCE_S,
            )
            assert edited.status_code == 200, edited.text
            assert not held.done()  # all of that before alice's check was released
        # Released, alice's solve finds its scenario changed since it was read: it checks the new
        # request, and queues that one (the snapshot of version 2), not the one it checked first.
        queued = await asyncio.wait_for(held, PATIENCE_S)
        assert queued.status_code == 202, queued.text
        async with clean_db.transaction() as session:
            await scope_rls_to(session, alice.user_id)
            version = (
                await session.execute(
                    text("SELECT scenario_version FROM solutions WHERE id = :id"), {"id": queued.json()["id"]}
                )
            ).scalar_one()
        assert version == 2


async def test_twenty_large_solves_by_one_user_delay_neither_health_nor_another_users_read(
    app_factory: AppFactory, clean_db: SqlAdmin
) -> None:
    async with fair_app(app_factory) as (app, counting, http):
        alice, bob = await sign_in(app, http, "alice"), await sign_in(app, http, "bob")
        large = await new_scenario(alice, large_invalid())
        await bob.call("POST", "/sessions", {"name": "bob's"})
        checkers = await checking_processes(alice, large)
        counting.solves_read = 0
        with frozen(checkers):
            pile = [
                asyncio.create_task(alice.call("POST", f"/scenarios/{large}/solve", {})) for _ in range(20)
            ]
            await eventually(lambda: _true(counting.solves_read == 20), timeout=PATIENCE_S)
            health = await asyncio.wait_for(http.get("/health"), PATIENCE_S)
            sessions = await asyncio.wait_for(bob.call("GET", "/sessions"), PATIENCE_S)
            assert health.status_code == 200
            assert sessions.status_code == 200, sessions.text
            assert [item["name"] for item in sessions.json()["items"]] == ["bob's"]
            assert not any(task.done() for task in pile)  # answered before any of alice's ended
        answers = await asyncio.wait_for(asyncio.gather(*pile), PATIENCE_S)
    assert {answer.status_code for answer in answers} == {422}


async def _true(value: bool) -> bool:
    return value
