"""What each request sends to PostgreSQL: a budget of round trips per planning request (so the gain
of issue 13 cannot silently regress), and a shard-ready discipline — every statement on a planning
table names its `workspace_id`, so on Citus (distributed by workspace_id, the tenant) each routes
to a single shard."""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

import pytest
from fastapi import FastAPI

from service.core.db import Database
from service.deps import app_state
from service.solver.example import EXAMPLE_REQUEST
from service.solver.outcome import Progress
from service.solving.repository import SolutionRepository, StartedSolve
from tests.kit.waiting import eventually
from tests.planning.conftest import Caller

PLANNING_TABLE = re.compile(r"\b(sessions|scenarios|solutions|stream_tickets)\b")
OWNER = re.compile(r"\bworkspace_id\b")
# Statements that touch no planning table: the transaction's own, the RLS scope, announcements,
# the per-user lock, and the queue (pgqueuer's table stays on the coordinator: docs/scaling.md).
NOT_TABLE_WORK = re.compile(
    r"^\s*(BEGIN|COMMIT|ROLLBACK|SELECT pg_notify|SELECT set_config|SELECT pg_advisory_xact_lock)|pgqueuer",
    re.IGNORECASE,
)


async def record(db: Database, coroutine: Any) -> list[str]:
    sent: list[str] = []
    async with db.observe(lambda query: sent.append(query.query)):
        await coroutine
    return sent


def round_trips(sent: list[str]) -> int:
    return len(sent)


async def tree(caller: Caller) -> dict[str, str]:
    session = (await caller.call("POST", "/sessions", {"name": "budget"})).json()["id"]
    scenario = (
        await caller.call("POST", f"/sessions/{session}/scenarios", {"name": "s", "request": {"a": 1}})
    ).json()["id"]
    return {"session": session, "scenario": scenario}


@pytest.mark.parametrize(
    ("method", "path", "body", "budget"),
    [
        ("GET", "/sessions", None, 3),
        ("GET", "/sessions/{session}/scenarios?limit=20", None, 3),
        ("GET", "/scenarios/{scenario}", None, 3),
        ("PATCH", "/scenarios/{scenario}", {"name": "renamed"}, 3),
        ("GET", "/sessions/{session}", None, 3),
        ("POST", "/sessions", {"name": "another"}, 3),
    ],
)
async def test_a_planning_request_stays_within_its_round_trips(
    app: FastAPI, alice: Caller, method: str, path: str, body: Any, budget: int
) -> None:
    ids = await tree(alice)
    db: Database = app_state(app).db

    async def cached() -> bool:
        # Once the listener is live, the caller's identity is served from the cache: no statement.
        # (A lookup that raced the listener going live is not cached, so ask until one sends none.)
        return not await record(db, alice.call("GET", "/users/me"))

    await eventually(cached)
    sent = await record(db, alice.call(method, path.format(**ids), body))
    # BEGIN and the RLS scope travel together; then the statement; then COMMIT.
    assert round_trips(sent) <= budget, "\n---\n".join(sent)
    assert sent[0].startswith("BEGIN; SELECT set_config('app.user_id'"), sent
    assert sent[-1] == "COMMIT"


async def test_every_planning_statement_names_its_owner(app: FastAPI, alice: Caller) -> None:
    db: Database = app_state(app).db
    sent: list[str] = []
    async with db.observe(lambda query: sent.append(query.query)):
        ids = await tree(alice)
        session, scenario = ids["session"], ids["scenario"]
        calls: list[tuple[str, str, Any]] = [
            ("GET", "/sessions", None),
            ("GET", f"/sessions/{session}", None),
            ("PATCH", f"/sessions/{session}", {"name": "x"}),
            ("GET", f"/sessions/{session}/scenarios", None),
            ("GET", f"/scenarios/{scenario}", None),
            ("GET", f"/scenarios/{scenario}/original", None),
            ("PATCH", f"/scenarios/{scenario}", {"request": {"b": 2}}),
            ("POST", f"/scenarios/{scenario}/reset", None),
            ("POST", f"/scenarios/{scenario}/solutions", {"status": "succeeded", "payload": {"k": 1}}),
            ("GET", f"/scenarios/{scenario}/solutions", None),
            ("GET", f"/sessions/{uuid.uuid4()}/scenarios", None),  # the not-found path checks the parent
        ]
        for method, path, body in calls:
            assert (await alice.call(method, path, body)).status_code < 500
        solution = (await alice.call("GET", f"/scenarios/{scenario}/solutions")).json()["items"][0]["id"]
        for method, path, body in [
            ("PATCH", f"/solutions/{solution}", {"status": "failed"}),
            ("GET", f"/solutions/{solution}", None),
            ("DELETE", f"/solutions/{solution}", None),
            ("DELETE", f"/scenarios/{scenario}", None),
            ("DELETE", f"/sessions/{session}", None),
        ]:
            assert (await alice.call(method, path, body)).status_code < 500
    _assert_owned(sent)


async def test_every_solve_statement_names_its_owner(
    app: FastAPI, alice: Caller, service_db: Database
) -> None:
    db: Database = app_state(app).db
    session = (await alice.call("POST", "/sessions", {"name": "solve"})).json()["id"]
    scenario = (
        await alice.call(
            "POST", f"/sessions/{session}/scenarios", {"name": "s", "request": copy.deepcopy(EXAMPLE_REQUEST)}
        )
    ).json()["id"]
    sent: list[str] = []
    async with db.observe(lambda query: sent.append(query.query)):
        solution = (await alice.call("POST", f"/scenarios/{scenario}/solve", {})).json()["id"]
        await alice.call("POST", f"/solutions/{solution}/events/ticket")
        await alice.call("GET", f"/solutions/{solution}")
    # The worker's statements, through the same repository a worker uses.
    async with service_db.observe(lambda query: sent.append(query.query)):
        async with service_db.as_user(alice.user_id) as conn:
            repo = SolutionRepository(conn, workspace=alice.user_id, user=alice.user_id)
            started = await repo.start(uuid.UUID(solution))
            assert isinstance(started, StartedSolve)
            await repo.report(
                uuid.UUID(solution),
                started.attempts,
                Progress(elapsed_s=0.5, iterations=1, best_distance=None, feasible=False),
            )
            await repo.finish(
                uuid.UUID(solution), started.attempts, "failed", payload=None, reason="test", progress=None
            )
            await repo.run_state(uuid.UUID(solution))
            await repo.abandon(uuid.UUID(solution), "test")
        async with service_db.as_user(alice.user_id) as conn:
            await SolutionRepository(conn, workspace=alice.user_id, user=alice.user_id).stream_state(
                uuid.UUID(solution)
            )
    _assert_owned(sent)


def _assert_owned(sent: list[str]) -> None:
    table_work = [s for s in sent if PLANNING_TABLE.search(s) and not NOT_TABLE_WORK.search(s)]
    assert table_work, "the flows issued no planning statements at all"
    unowned = [s for s in table_work if not OWNER.search(s)]
    assert not unowned, unowned
