"""Engine, one transaction per request, and the caller's row-level-security context."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import uuid_utils
from fastapi import Depends, Request
from sqlalchemy import Column, DateTime, func, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel

from service.config import Settings

log = logging.getLogger("routebook.db")

# Stable constraint and index names, so migrations can name what they alter or drop.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = SQLModel.metadata

# The non-owner role the request path runs as, so row-level security binds even when
# DATABASE_URL logs in as a superuser or as the tables' owner. Created by migration.
APP_ROLE = "routebook_app"

# One round trip: the caller's id for the RLS policies, then drop to the app role. Both are
# transaction-local (is_local = true), so a pooled connection carries nothing to the next user.
_SCOPE_SQL = text("SELECT set_config('app.user_id', :user_id, true), set_config('role', :role, true)")


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


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def asyncpg_connect_args(url: str) -> dict[str, Any]:
    """asyncpg.connect() keyword arguments for a SQLAlchemy URL (host may be a socket directory)."""
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


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    database_url = url or settings.database_url
    if database_url is None:
        raise RuntimeError("DATABASE_URL is not set (make run / make test start an embedded PostgreSQL)")
    return create_async_engine(
        database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=True,
        # Bound parameters can be request bodies: never quote them in error messages or logs.
        hide_parameters=True,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        connect_args={
            # 0 disables asyncpg's prepared-statement cache, as PgBouncer in transaction mode needs.
            "statement_cache_size": settings.db_statement_cache_size,
            "server_settings": {"application_name": "routebook"},
            "timeout": 5,
        },
    )


class Database:
    """The engine and its session factory; one per app, kept on `app.state.db`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed when the block ends, rolled back on any error."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def user_transaction(self, user_id: uuid.UUID) -> AsyncIterator[AsyncSession]:
        """A transaction scoped to one user: runs as the app role, so RLS sees only their rows."""
        async with self.transaction() as session:
            await scope_to_user(session, user_id)
            yield session

    @asynccontextmanager
    async def privileged_transaction(self) -> AsyncIterator[AsyncSession]:
        """The explicitly named cross-user path (user sync, admin listing): the login role, no RLS role."""
        async with self.transaction() as session:
            yield session

    async def ping(self, timeout: float = 2.0) -> bool:
        try:
            async with asyncio.timeout(timeout):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            return True
        except Exception as exc:
            # Whatever the cause (refused, timed out, a bad URL option), the answer is "not ready".
            log.warning("database ping failed: %s", type(exc).__name__)
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()


async def scope_to_user(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(_SCOPE_SQL, {"user_id": str(user_id), "role": APP_ROLE})


async def scope_rls_to(session: AsyncSession, user_id: uuid.UUID) -> None:
    """On the privileged path, let the RLS policies admit `user_id`'s rows (and only theirs) while
    staying the login role: FORCE binds a table-owning login role too (e.g. erasing a user)."""
    await session.execute(text("SELECT set_config('app.user_id', :user_id, true)"), {"user_id": str(user_id)})


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


DatabaseDep = Annotated[Database, Depends(get_db)]


async def privileged_session(db: DatabaseDep) -> AsyncIterator[AsyncSession]:
    """Session-per-request on the explicitly named privileged path (the login role, not the RLS
    request role), for routes that act across users by nature, such as the admin listing."""
    async with db.privileged_transaction() as session:
        yield session


# scope="function": the transaction commits when the route returns, before the response is sent.
PrivilegedSessionDep = Annotated[AsyncSession, Depends(privileged_session, scope="function")]
