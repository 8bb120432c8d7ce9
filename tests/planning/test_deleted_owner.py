"""A deletion racing a request: no planning row may be created for a tombstoned user."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from service.core.db import Database
from service.deps import app_state
from tests.kit.sql import SqlAdmin, scope_rls_to
from tests.kit.waiting import eventually
from tests.planning.conftest import Caller


async def tombstone_without_announcing(app: FastAPI, db: SqlAdmin, caller: Caller) -> None:
    """As if the deletion committed after this request passed the identity gate: the instance's
    cache still holds the live user, so only the database can refuse the write."""
    for _ in range(100):
        if app_state(app).identity.live:
            break
        await asyncio.sleep(0.05)
    assert app_state(app).identity.live
    assert (await caller.call("GET", "/users/me")).status_code == 200  # now cached as live
    async with db.transaction() as session:
        await session.execute(
            text("UPDATE users SET deleted_at = now() WHERE id = :id"), {"id": caller.user_id}
        )


async def test_a_session_cannot_be_created_for_a_deleted_user(
    app: FastAPI, alice: Caller, clean_db: SqlAdmin
) -> None:
    await tombstone_without_announcing(app, clean_db, alice)
    response = await alice.call("POST", "/sessions", {"name": "after the erase"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    async with clean_db.transaction() as session:
        count = (await session.execute(text("SELECT count(*) FROM sessions"))).scalar_one()
    assert count == 0


async def test_the_request_role_is_refused_directly_too(
    app: FastAPI, alice: Caller, clean_db: SqlAdmin, service_db: Database
) -> None:
    await tombstone_without_announcing(app, clean_db, alice)
    with pytest.raises(asyncpg.PostgresError, match="has been deleted"):
        async with service_db.as_user(alice.user_id) as conn:
            await conn.execute(
                "INSERT INTO sessions (id, workspace_id, user_id, name) VALUES (gen_random_uuid(), $1, $1, 'x')",
                alice.user_id,
            )


async def test_a_live_user_still_creates_sessions(alice: Caller) -> None:
    response = await alice.call("POST", "/sessions", {"name": "fine"})
    assert response.status_code == 201


async def test_an_insert_racing_the_deletion_waits_and_is_refused(
    alice: Caller, clean_db: SqlAdmin, service_db: Database
) -> None:
    """The deletion holds the user row FOR UPDATE (as the webhook handler does); a session insert
    that started meanwhile must wait for it and then see the tombstone, not the old live row."""
    insert_started = asyncio.Event()

    async def racing_insert() -> None:
        async with service_db.as_user(alice.user_id) as conn:
            insert_started.set()
            await conn.execute(
                "INSERT INTO sessions (id, workspace_id, user_id, name) VALUES (gen_random_uuid(), $1, $1, 'late')",
                alice.user_id,
            )

    async def insert_waits_on_a_lock() -> bool:
        return await clean_db.waits_on_a_lock("INSERT INTO sessions%")

    async with clean_db.transaction() as deletion:
        await deletion.execute(text("SELECT 1 FROM users WHERE id = :id FOR UPDATE"), {"id": alice.user_id})
        await deletion.execute(
            text("UPDATE users SET deleted_at = now() WHERE id = :id"), {"id": alice.user_id}
        )
        insert = asyncio.create_task(racing_insert())
        await insert_started.wait()
        await eventually(insert_waits_on_a_lock)  # the insert is blocked on the user row
        assert not insert.done()
        await scope_rls_to(deletion, alice.user_id)
        await deletion.execute(text("DELETE FROM sessions WHERE user_id = :id"), {"id": alice.user_id})
    with pytest.raises(asyncpg.PostgresError, match="has been deleted"):
        await insert
    async with clean_db.transaction() as session:
        assert (await session.execute(text("SELECT count(*) FROM sessions"))).scalar_one() == 0
