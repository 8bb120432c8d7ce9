"""The identity listener: concurrent barriers, and the fallback when its connection is lost."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from sqlalchemy import text

from service.core.notify import LISTENER_APPLICATION_NAME
from service.deps import app_state
from service.users.identity import IdentityService
from tests.kit.sql import SqlAdmin


async def wait_live(directory: IdentityService, live: bool = True) -> None:
    for _ in range(200):
        if directory.live is live:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"directory never became live={live}")


async def test_concurrent_syncs_all_complete(app: FastAPI) -> None:
    await wait_live(app_state(app).identity)
    # One LISTEN connection serves them all; asyncpg allows one operation at a time on it.
    await asyncio.gather(*(app_state(app).listener.sync() for _ in range(10)))
    assert app_state(app).identity.live


async def test_a_lost_listener_makes_the_directory_read_the_database(
    app: FastAPI, clean_db: SqlAdmin
) -> None:
    directory: IdentityService = app_state(app).identity
    await wait_live(directory)
    user = await directory.resolve("dev", "cached-user", None)
    assert not user.deleted
    # Kill the listener's connection from the server side: the directory must stop trusting its cache.
    async with clean_db.transaction() as session:
        await session.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :name AND datname = current_database()"
            ),
            {"name": LISTENER_APPLICATION_NAME},
        )
        await session.execute(text("UPDATE users SET deleted_at = now() WHERE subject = 'cached-user'"))
    await wait_live(directory, live=False)
    assert (await directory.resolve("dev", "cached-user", None)).deleted  # read from the database
    await wait_live(directory)  # and it reconnects by itself
