"""Who a verified token belongs to: (provider, subject) → local user, tombstones, revoked sessions.

Two bounded in-process caches keep the database off the hot path (a signed-in SPA sends the
same token for its whole lifetime). They stay correct across processes through PostgreSQL
LISTEN/NOTIFY: every change that could refuse a token (a tombstone, a revoked session) is
announced in the same transaction that makes it, and every instance drops what it cached.
While an instance's listener is down it cannot hear those announcements, so it serves from the
database alone until the listener is back (see `IdentityListener`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import Database, new_id, utcnow

log = logging.getLogger("routebook.identity")

IDENTITY_CHANNEL = "routebook_identity"
# Defence in depth: even with a live listener, a cached entry is re-read after this long.
CACHE_TTL_SECONDS = 300.0
CACHE_SIZE = 50_000

# Insert-if-absent and read back in one statement. Under READ COMMITTED a concurrent first
# request can make both halves come back empty (its row is not in our snapshot yet); the caller
# then simply asks again, and the second statement sees the committed row.
_UPSERT_USER = text(
    """
    WITH inserted AS (
        INSERT INTO users (id, provider, subject, email)
        VALUES (:id, :provider, :subject, :email)
        ON CONFLICT (provider, subject) DO NOTHING
        RETURNING id, deleted_at, email, created_at
    )
    SELECT id, deleted_at, email, created_at FROM inserted
    UNION ALL
    SELECT id, deleted_at, email, created_at FROM users WHERE provider = :provider AND subject = :subject
    LIMIT 1
    """
)
_IS_REVOKED = text(
    "SELECT 1 FROM revoked_sessions WHERE provider = :provider AND session_id = :session_id AND expires_at > now()"
)
_LIVE_REVOCATIONS = text(
    "SELECT provider, session_id, expires_at FROM revoked_sessions WHERE expires_at > now()"
)

# The longest a token that names a provider session may live. A revocation is kept this long (plus
# the clock leeway), and the identity gate refuses a session token that would outlive it — so a
# purged revocation can never readmit a token of that session.
MAX_SESSION_TOKEN_LIFETIME = timedelta(hours=24)
# The revocation set is swept of expired entries when it has grown by this many since the last sweep.
_SWEEP_EVERY = 1024


@dataclass(frozen=True, slots=True)
class UserRef:
    id: uuid.UUID
    deleted: bool
    email: str | None
    created_at: datetime


@dataclass(slots=True)
class _Entry:
    user: UserRef
    expires: float


class IdentityDirectory:
    """Resolves verified identities to users; one per app instance."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._users: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        # (provider, session id) → when the revocation may be forgotten (epoch seconds).
        self._revoked: dict[tuple[str, str], float] = {}
        self._revoked_at_sweep = 0
        # False until the listener is connected and the revocation set is loaded; while False,
        # nothing is served from (or written to) the caches.
        self.live = False
        # Bumped by every announcement: a lookup that raced one is not cached (it may be stale).
        self._generation = 0

    async def resolve(self, provider: str, subject: str, email: str | None) -> UserRef:
        """The user for (provider, subject), created on first sight."""
        key = (provider, subject)
        if self.live:
            entry = self._users.get(key)
            if entry is not None and entry.expires > time.monotonic():
                return entry.user
        generation = self._generation
        user = await self._upsert(provider, subject, email)
        if self.live and generation == self._generation:
            self._remember(key, user)
        return user

    async def is_revoked(self, provider: str, session_id: str) -> bool:
        if self.live:
            return (provider, session_id) in self._revoked  # an expired entry only outlives its tokens
        async with self._db.privileged_transaction() as session:
            row = await session.execute(_IS_REVOKED, {"provider": provider, "session_id": session_id})
            return row.first() is not None

    async def _upsert(self, provider: str, subject: str, email: str | None) -> UserRef:
        params = {"id": new_id(), "provider": provider, "subject": subject, "email": email}
        for _ in range(3):
            async with self._db.privileged_transaction() as session:
                row = (await session.execute(_UPSERT_USER, params)).first()
            if row is not None:
                return UserRef(
                    # asyncpg's own UUID subclass: normalise, so every consumer sees uuid.UUID.
                    id=uuid.UUID(bytes=row.id.bytes),
                    deleted=row.deleted_at is not None,
                    email=row.email,
                    created_at=row.created_at,
                )
        raise RuntimeError("could not resolve user after concurrent insert")  # pragma: no cover

    def _remember(self, key: tuple[str, str], user: UserRef) -> None:
        self._users[key] = _Entry(user, time.monotonic() + CACHE_TTL_SECONDS)
        self._users.move_to_end(key)
        while len(self._users) > CACHE_SIZE:
            self._users.popitem(last=False)

    # --- what the listener calls -------------------------------------------------------------

    async def go_live(self) -> None:
        """The listener is connected: start caching from a fresh view of the database."""
        async with self._db.privileged_transaction() as session:
            rows = (await session.execute(_LIVE_REVOCATIONS)).all()
        self._generation += 1
        self._users.clear()
        # A union, not a replacement: announcements that arrived while we read are kept.
        self._revoked.update({(row.provider, row.session_id): row.expires_at.timestamp() for row in rows})
        self.live = True

    def go_blind(self) -> None:
        """The listener is gone: announcements may be missed, so stop trusting the caches."""
        self.live = False
        self._generation += 1
        self._users.clear()
        self._revoked.clear()
        self._revoked_at_sweep = 0

    def _sweep_revocations(self) -> None:
        """Forget revocations whose tokens have all expired, so the set does not grow forever."""
        if len(self._revoked) - self._revoked_at_sweep < _SWEEP_EVERY:
            return
        now = time.time()
        self._revoked = {key: until for key, until in self._revoked.items() if until > now}
        self._revoked_at_sweep = len(self._revoked)

    def apply(self, payload: str) -> None:
        """An announcement from any instance (this one included)."""
        kind, _, rest = payload.partition(":")
        provider, _, ident = rest.partition(":")
        self._generation += 1
        if kind == "user":
            self._users.pop((provider, ident), None)
        elif kind == "session":
            self._revoked[(provider, ident)] = time.time() + MAX_SESSION_TOKEN_LIFETIME.total_seconds()
            self._sweep_revocations()
        else:
            log.warning("unknown identity announcement %r", kind)


async def announce_user_changed(session: AsyncSession, provider: str, subject: str) -> None:
    """Tell every instance to forget a user; delivered when (and only if) the transaction commits."""
    await _notify(session, f"user:{provider}:{subject}")


async def revoke_session(
    session: AsyncSession, provider: str, session_id: str, subject: str | None, keep_for: timedelta
) -> None:
    """Record a revoked provider session and tell every instance, in the caller's transaction."""
    now = utcnow()
    await session.execute(
        text(
            """
            INSERT INTO revoked_sessions (provider, session_id, subject, revoked_at, expires_at)
            VALUES (:provider, :session_id, :subject, :now, :expires_at)
            ON CONFLICT (provider, session_id) DO UPDATE
                SET expires_at = GREATEST(revoked_sessions.expires_at, EXCLUDED.expires_at)
            """
        ),
        {
            "provider": provider,
            "session_id": session_id,
            "subject": subject,
            "now": now,
            "expires_at": now + keep_for,
        },
    )
    await _notify(session, f"session:{provider}:{session_id}")


async def purge_expired_revocations(session: AsyncSession, now: datetime | None = None) -> int:
    result = await session.execute(
        text("DELETE FROM revoked_sessions WHERE expires_at <= :now"), {"now": now or utcnow()}
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def _notify(session: AsyncSession, payload: str) -> None:
    await session.execute(
        text("SELECT pg_notify(:channel, :payload)"), {"channel": IDENTITY_CHANNEL, "payload": payload}
    )
