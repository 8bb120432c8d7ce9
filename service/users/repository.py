"""Queries on `users` for the admin path (the identity gate keeps its own, in users/directory.py)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from service.pagination import Cursor, after_cursor
from service.users.models import User


async def list_users(session: AsyncSession, limit: int, cursor: Cursor | None) -> Sequence[User]:
    """Every user, newest first: only for the admin route, on the privileged path."""
    statement = select(User).order_by(col(User.created_at).desc(), col(User.id).desc()).limit(limit + 1)
    if cursor is not None:
        statement = statement.where(after_cursor(User.created_at, User.id, cursor))  # type: ignore[arg-type]
    return (await session.execute(statement)).scalars().all()
