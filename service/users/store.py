"""Every statement on `users` and `revoked_sessions`. Functions take the caller's connection (inside
one of `Database`'s transactions) and never commit; the identity service decides when they run."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from service.core.db import Connection, new_id, utcnow
from service.core.pagination import Cursor
from service.providers.events import ProviderUser

IDENTITY_CHANNEL = "routebook_identity"


@dataclass(frozen=True, slots=True)
class UserRef:
    id: uuid.UUID
    deleted: bool
    email: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A `users` row as the admin listing reads it."""

    id: uuid.UUID
    provider: str
    subject: str
    email: str | None
    display_name: str | None
    created_at: datetime
    deleted: bool


def _uuid(value: uuid.UUID) -> uuid.UUID:
    # asyncpg's own UUID subclass: normalise, so every consumer sees uuid.UUID.
    return uuid.UUID(bytes=value.bytes)


# Insert-if-absent and read back in one statement. Under READ COMMITTED a concurrent first
# request can make both halves come back empty (its row is not in our snapshot yet); the caller
# then simply asks again, and the second statement sees the committed row.
_RESOLVE = """
    WITH inserted AS (
        INSERT INTO users (id, provider, subject, email)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (provider, subject) DO NOTHING
        RETURNING id, deleted_at, email, created_at
    )
    SELECT id, deleted_at, email, created_at FROM inserted
    UNION ALL
    SELECT id, deleted_at, email, created_at FROM users WHERE provider = $2 AND subject = $3
    LIMIT 1
"""


async def resolve(conn: Connection, provider: str, subject: str, email: str | None) -> UserRef | None:
    """The user for (provider, subject), inserted if absent; None when a concurrent insert hid it."""
    row = await conn.fetchrow(_RESOLVE, new_id(), provider, subject, email)
    if row is None:
        return None
    return UserRef(_uuid(row["id"]), row["deleted_at"] is not None, row["email"], row["created_at"])


# One statement, so concurrent deliveries for one user serialize on the row: ON CONFLICT DO UPDATE
# evaluates its WHERE against the latest committed version. The WHERE is the whole rule set:
#   - a tombstone is final (a late created/updated never resurrects the user);
#   - an event older than the stored one is ignored (providers do not guarantee order); an event
#     without updated_at only fills a row that has none, since it cannot prove it is newer;
#   - identical values write nothing, so replays (Supabase has no event id) are free no-ops.
_UPSERT = """
    INSERT INTO users AS u (id, provider, subject, email, display_name, provider_updated_at)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (provider, subject) DO UPDATE
        SET email = EXCLUDED.email,
            display_name = EXCLUDED.display_name,
            provider_updated_at = EXCLUDED.provider_updated_at,
            updated_at = now()
        WHERE u.deleted_at IS NULL
          AND (u.provider_updated_at IS NULL OR u.provider_updated_at <= EXCLUDED.provider_updated_at)
          AND (u.email, u.display_name, u.provider_updated_at)
              IS DISTINCT FROM (EXCLUDED.email, EXCLUDED.display_name, EXCLUDED.provider_updated_at)
    RETURNING (xmax = 0) AS inserted
"""


async def upsert(conn: Connection, provider: str, user: ProviderUser) -> bool | None:
    """True created, False updated, None nothing written (same values, older event, tombstone)."""
    inserted: bool | None = await conn.fetchval(
        _UPSERT, new_id(), provider, user.subject, user.email, user.display_name, user.updated_at
    )
    return inserted


# Taken before the tombstone is written: FOR UPDATE (unlike the NO KEY lock an UPDATE takes)
# conflicts with the KEY SHARE lock a planning insert's foreign-key check holds, so a session being
# created at this moment commits first, and the erasure after the tombstone sees it.
_LOCK = "SELECT 1 FROM users WHERE provider = $1 AND subject = $2 FOR UPDATE"

# A never-seen user still gets a row: the tombstone is what stops a late `created` from
# resurrecting them. `deleted_at` keeps its first value; `newly` tells this statement set it.
_TOMBSTONE = """
    INSERT INTO users AS u (id, provider, subject, deleted_at, updated_at)
    VALUES ($1, $2, $3, $4, $4)
    ON CONFLICT (provider, subject) DO UPDATE
        SET deleted_at = COALESCE(u.deleted_at, EXCLUDED.deleted_at),
            email = NULL,
            display_name = NULL,
            updated_at = CASE WHEN u.deleted_at IS NULL THEN EXCLUDED.updated_at ELSE u.updated_at END
    RETURNING id, (deleted_at = $4) AS newly
"""


async def tombstone(conn: Connection, provider: str, subject: str) -> tuple[uuid.UUID, bool]:
    """(user id, whether this call tombstoned them) — the row is locked first (see _LOCK)."""
    await conn.execute(_LOCK, provider, subject)
    row = await conn.fetchrow(_TOMBSTONE, new_id(), provider, subject, utcnow())
    assert row is not None  # an upsert always returns its row
    return _uuid(row["id"]), bool(row["newly"])


async def is_revoked(conn: Connection, provider: str, session_id: str) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM revoked_sessions WHERE provider = $1 AND session_id = $2 AND expires_at > now()",
        provider,
        session_id,
    )
    return found is not None


async def live_revocations(conn: Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT provider, session_id, expires_at FROM revoked_sessions WHERE expires_at > now()"
    )


async def revoke(
    conn: Connection, provider: str, session_id: str, subject: str | None, expires_at: datetime
) -> None:
    await conn.execute(
        """
        INSERT INTO revoked_sessions (provider, session_id, subject, revoked_at, expires_at)
        VALUES ($1, $2, $3, now(), $4)
        ON CONFLICT (provider, session_id) DO UPDATE
            SET expires_at = GREATEST(revoked_sessions.expires_at, EXCLUDED.expires_at)
        """,
        provider,
        session_id,
        subject,
        expires_at,
    )


async def purge_expired_revocations(conn: Connection, now: datetime | None = None) -> int:
    status = await conn.execute("DELETE FROM revoked_sessions WHERE expires_at <= $1", now or utcnow())
    return int(status.split()[-1])


async def live_subjects(conn: Connection, provider: str) -> set[str]:
    rows = await conn.fetch("SELECT subject FROM users WHERE provider = $1 AND deleted_at IS NULL", provider)
    return {row["subject"] for row in rows}


async def list_users(conn: Connection, limit: int, cursor: Cursor | None) -> Sequence[UserRecord]:
    """Every user, newest first (limit + 1 rows: the extra one says a next page exists)."""
    after = "WHERE (created_at, id) < ($2, $3)" if cursor is not None else ""
    args: tuple[object, ...] = (
        (limit + 1, cursor.created_at, cursor.id) if cursor is not None else (limit + 1,)
    )
    rows = await conn.fetch(
        f"""
        SELECT id, provider, subject, email, display_name, created_at, deleted_at IS NOT NULL AS deleted
        FROM users {after} ORDER BY created_at DESC, id DESC LIMIT $1
        """,
        *args,
    )
    return [UserRecord(**{**dict(row), "id": _uuid(row["id"])}) for row in rows]


async def announce(conn: Connection, payload: str) -> None:
    """Tell every instance (NOTIFY); delivered when, and only if, the transaction commits."""
    await conn.execute("SELECT pg_notify($1, $2)", IDENTITY_CHANNEL, payload)
