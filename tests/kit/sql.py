"""Arranging and inspecting rows in tests through SQLAlchemy, a path independent of the app's own.

The app talks to PostgreSQL through asyncpg (`service.core.db.Database`); tests that need ground truth
(what a request really wrote) or rows arranged directly read and write through this helper, as
the login role, naming the user whose rows they touch (FORCEd RLS binds a table-owning login too).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


class SqlAdmin:
    """The login role through SQLAlchemy: `transaction()` yields a session in one transaction."""

    def __init__(self, url: str) -> None:
        self.engine: AsyncEngine = create_async_engine(url, pool_size=5, max_overflow=10)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session, session.begin():
            yield session

    async def waits_on_a_lock(self, query_like: str) -> bool:
        """Whether a statement of this database matching `query_like` (a LIKE pattern) now waits on a
        lock. A transaction of its own each call: pg_stat_activity is a snapshot within one."""
        async with self.transaction() as probe:
            waiting = await probe.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database() AND query LIKE :query_like"
                ),
                {"query_like": query_like},
            )
            return bool(waiting.scalar_one())

    async def dispose(self) -> None:
        await self.engine.dispose()


async def scope_rls_to(
    session: AsyncSession, user_id: uuid.UUID, workspace_id: uuid.UUID | None = None
) -> None:
    """Let the RLS policies admit the rows of one workspace (by default `user_id`'s personal one,
    whose id is the user's) while staying the login role; `user_id` is the creator of inserts."""
    await session.execute(
        text(
            "SELECT set_config('app.user_id', :user_id, true), set_config('app.workspace_id', :workspace, true)"
        ),
        {"user_id": str(user_id), "workspace": str(workspace_id or user_id)},
    )
