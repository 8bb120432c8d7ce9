"""Row-level security binds on its own: with no owner filter in the SQL at all, the request's
transaction sees and writes only the caller's rows, and it runs as the non-superuser app role."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.db import APP_ROLE, Database, new_id
from service.deps import app_state
from service.planning.repository import PlanningRepository
from service.planning.routes import planning_scope
from service.planning.routes import router as planning_router
from service.workspaces.models import Role
from tests.kit.sql import SqlAdmin, scope_rls_to
from tests.planning.conftest import Caller, insert_scenarios, owners, row_snapshot


async def two_users_with_scenarios(alice: Caller, bob: Caller, db: SqlAdmin) -> dict[uuid.UUID, uuid.UUID]:
    """Each user's session id, with three scenarios in it."""
    sessions = {}
    for caller in (alice, bob):
        created = await caller.call("POST", "/sessions", {"name": "rls"})
        sessions[caller.user_id] = uuid.UUID(created.json()["id"])
        await insert_scenarios(db, caller.user_id, sessions[caller.user_id], 3)
    return sessions


async def test_an_unfiltered_select_returns_only_the_callers_rows(
    alice: Caller, bob: Caller, clean_db: SqlAdmin, service_db: Database
) -> None:
    await two_users_with_scenarios(alice, bob, clean_db)
    async with service_db.as_user(alice.user_id) as conn:
        owners = [row["user_id"] for row in await conn.fetch("SELECT user_id FROM scenarios")]
        assert owners and set(owners) == {alice.user_id}
        assert await conn.fetchval("SELECT count(*) FROM sessions") == 1
        # Writes without a filter reach only the caller's rows too.
        assert await conn.execute("UPDATE scenarios SET name = 'mine'") == "UPDATE 3"
        assert await conn.execute("DELETE FROM sessions WHERE user_id <> $1", alice.user_id) == "DELETE 0"
    async with clean_db.transaction() as session:
        await scope_rls_to(session, bob.user_id)
        names = (
            await session.execute(text("SELECT name FROM scenarios WHERE user_id = :b"), {"b": bob.user_id})
        ).scalars()
        assert "mine" not in set(names)


async def test_an_insert_carrying_another_users_id_fails(
    alice: Caller, bob: Caller, clean_db: SqlAdmin, service_db: Database
) -> None:
    sessions = await two_users_with_scenarios(alice, bob, clean_db)
    with pytest.raises(asyncpg.PostgresError, match="row-level security"):
        async with service_db.as_user(alice.user_id) as conn:
            await conn.execute(
                "INSERT INTO sessions (id, user_id, name) VALUES ($1, $2, 'planted')", new_id(), bob.user_id
            )
    with pytest.raises(asyncpg.PostgresError, match="row-level security"):
        async with service_db.as_user(alice.user_id) as conn:
            await conn.execute(
                "INSERT INTO scenarios (id, user_id, session_id, name, original_request) "
                "VALUES ($1, $2, $3, 'planted', '{}')",
                new_id(),
                bob.user_id,
                sessions[bob.user_id],
            )


async def test_the_request_role_is_the_app_role_and_no_superuser(
    clean_db: SqlAdmin, service_db: Database
) -> None:
    async with service_db.as_user(new_id()) as conn:
        row = await conn.fetchrow(
            "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
    assert row is not None and tuple(row) == (APP_ROLE, False, False)


async def test_without_a_user_id_the_app_role_sees_nothing(
    alice: Caller, bob: Caller, clean_db: SqlAdmin
) -> None:
    await two_users_with_scenarios(alice, bob, clean_db)
    async with clean_db.transaction() as session:
        await session.execute(text(f"SET LOCAL ROLE {APP_ROLE}"))
        assert (await session.execute(text("SELECT count(*) FROM scenarios"))).scalar_one() == 0


async def test_the_scope_ends_with_the_transaction(clean_db: SqlAdmin) -> None:
    """A pooled connection carries neither the role nor the user id to the next transaction."""
    single = Database(str(clean_db.engine.url.render_as_string(hide_password=False)), max_size=1)
    try:
        async with single.as_user(new_id()):
            pass
        async with single.privileged() as conn:  # the same (only) connection
            row = await conn.fetchrow("SELECT current_user, current_setting('app.user_id', true)")
        assert row is not None
        role, user_id = tuple(row)
        assert role != APP_ROLE
        assert not user_id
    finally:
        await single.close()


async def test_the_request_path_opens_the_members_transaction(app: FastAPI, clean_db: SqlAdmin) -> None:
    """What every planning route works in: the app role, the workspace and the caller's id, before
    any query."""
    user_id, workspace_id = new_id(), new_id()
    member = cast(
        Any, SimpleNamespace(user_id=user_id, workspace=SimpleNamespace(id=workspace_id), role=Role.MEMBER)
    )
    planning = planning_scope(app_state(app).db, member)
    async with planning.transaction() as repository:
        assert (repository.workspace, repository.user) == (workspace_id, user_id)
        conn = repository._conn  # the test looks inside: what does this transaction run as?
        row = await conn.fetchrow(
            "SELECT current_user, current_setting('app.user_id', true), current_setting('app.workspace_id', true)"
        )
        assert row is not None and tuple(row) == (APP_ROLE, str(user_id), str(workspace_id))
    assert planning_router.dependencies  # authentication comes before any planning route body


def test_a_repository_cannot_be_built_without_its_workspace_and_member() -> None:
    some = new_id()
    with pytest.raises(TypeError):
        PlanningRepository(cast(Any, None), workspace=cast(Any, None), user=some)
    with pytest.raises(TypeError):
        PlanningRepository(cast(Any, None), workspace=some, user=cast(Any, None))
    with pytest.raises(TypeError):
        PlanningRepository(
            cast(Any, None), workspace=cast(Any, "01a20887-9aef-715a-bba9-7a10b66ea2d6"), user=some
        )
    with pytest.raises(TypeError):
        PlanningRepository(cast(Any, None), workspace=some)  # type: ignore[call-arg]


class _RlsBoundLogin(SqlAdmin):
    """The login role as RLS binds it when it owns the tables without being a superuser (FORCE):
    the app role stands in, being bound by the same policies."""

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with super().transaction() as session:
            await session.execute(text(f"SET LOCAL ROLE {APP_ROLE}"))
            yield session


async def test_the_test_helpers_work_where_rls_binds_the_login_role(
    alice: Caller, bob: Caller, clean_db: SqlAdmin
) -> None:
    bound = _RlsBoundLogin(clean_db.engine.url.render_as_string(hide_password=False))
    sessions = await two_users_with_scenarios(alice, bob, bound)
    truth = await owners(bound, [alice.user_id, bob.user_id])
    assert truth == await owners(clean_db, [alice.user_id, bob.user_id])
    assert set(truth["sessions"]) == set(sessions.values())
    assert sorted(truth["scenarios"].values()) == sorted([alice.user_id] * 3 + [bob.user_id] * 3)
    snapshot = await row_snapshot(bound, alice.user_id)
    assert snapshot == await row_snapshot(clean_db, alice.user_id)
    assert len(snapshot["sessions"]) == 1 and len(snapshot["scenarios"]) == 3
    await bound.dispose()
