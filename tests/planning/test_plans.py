"""The keyset lists' plans, on data shaped like production (many owners, many parents): an index scan
in index order that stops after limit + 1 rows, no Sort — which needs migration 0008's statistics
(the parent determines the owner; without them the planner expects almost no rows and sorts)."""

from __future__ import annotations

import uuid
from typing import Any, cast

import asyncpg
from sqlalchemy import text

from service.core.db import Connection, Database
from service.core.pagination import Cursor
from service.planning.repository import PlanningRepository
from tests.kit.sql import SqlAdmin, scope_rls_to
from tests.planning.conftest import Caller

OTHER_USERS = 200
SESSIONS_EACH = 5
SCENARIOS_EACH = 4
MEASURED = 300


class Explaining:
    """The request's connection, answering each statement with its EXPLAIN (ANALYZE) instead."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.plans: list[str] = []

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows = await self._conn.fetch(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}", *args)
        self.plans.append("\n".join(row[0] for row in rows))
        return await self._conn.fetch(sql, *args)


async def arrange(db: SqlAdmin, owner: uuid.UUID) -> uuid.UUID:
    """Many users with a few small sessions each, and `owner`'s one big session, created over the
    same minutes (interleaved in time, as in life); then ANALYZE."""
    async with db.transaction() as session:
        for index in range(OTHER_USERS):
            user_id = uuid.uuid4()
            await session.execute(
                text("INSERT INTO users (id, provider, subject) VALUES (:id, 'dev', :subject)"),
                {"id": user_id, "subject": f"plan-user-{index}"},
            )
            await scope_rls_to(session, user_id)
            await session.execute(
                text(
                    "WITH s AS (INSERT INTO sessions (id, workspace_id, user_id, name) "
                    "SELECT gen_random_uuid(), :u, :u, 'small' FROM generate_series(1, :sessions) RETURNING id) "
                    "INSERT INTO scenarios (id, workspace_id, user_id, session_id, name, original_request, created_at) "
                    "SELECT gen_random_uuid(), :u, :u, s.id, 'small', '{}', now() - random() * :span * interval '1 s' "
                    "FROM s, generate_series(1, :scenarios)"
                ),
                {"u": user_id, "sessions": SESSIONS_EACH, "scenarios": SCENARIOS_EACH, "span": MEASURED},
            )
        await scope_rls_to(session, owner)
        session_id = uuid.uuid4()
        await session.execute(
            text("INSERT INTO sessions (id, workspace_id, user_id, name) VALUES (:id, :u, :u, 'big')"),
            {"id": session_id, "u": owner},
        )
        await session.execute(
            text(
                "INSERT INTO scenarios (id, workspace_id, user_id, session_id, name, original_request, created_at) "
                "SELECT gen_random_uuid(), :u, :u, :s, 'big', '{}', now() - n * interval '1 second' "
                "FROM generate_series(1, :n) AS n"
            ),
            {"u": owner, "s": session_id, "n": MEASURED},
        )
    async with db.transaction() as session:
        await session.execute(text("ANALYZE users, sessions, scenarios"))
    return session_id


async def test_scenario_pages_are_index_ordered_scans(
    alice: Caller, clean_db: SqlAdmin, service_db: Database
) -> None:
    session_id = await arrange(clean_db, alice.user_id)
    explaining: Explaining | None = None
    async with service_db.as_user(alice.user_id) as conn:
        explaining = Explaining(conn)
        repo = PlanningRepository(cast(Connection, explaining), workspace=alice.user_id, user=alice.user_id)
        first = await repo.list_scenarios(session_id, 20, None)
        await repo.list_scenarios(session_id, 20, Cursor(first[19].created_at, first[19].id))
    assert len(explaining.plans) == 2
    for plan in explaining.plans:
        assert "Index Scan using ix_scenarios_session_id_created_at_id" in plan, plan
        assert "Sort" not in plan and "Seq Scan" not in plan, plan
