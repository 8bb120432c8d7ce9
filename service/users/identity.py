"""The identity service: who a verified token belongs to, and every change a provider tells us of.

It resolves (provider, subject) to a local user (created on first sight), refuses tombstoned users
and revoked sessions, and applies the provider-neutral events that webhooks and reconcile read
(upsert under the order guard, tombstone + erase, session revocation). Every statement is in
`store`; this module holds the rules and the caches.

Two bounded in-process caches keep the database off the hot path (a signed-in SPA sends the same
token for its whole lifetime). They stay correct across processes through LISTEN/NOTIFY: every
change that could refuse a token is announced in the transaction that makes it, and every instance
drops what it cached. While an instance's listener is down it cannot hear those announcements, so
it serves from the database alone until the listener is back (`service.core.notify`).
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta

from service.auth.tokens import Claims
from service.core.db import Connection, Database, utcnow
from service.core.pagination import Cursor
from service.providers.events import ProviderUser, UserEvent
from service.users import store
from service.users.store import UserRef

log = logging.getLogger("routebook.identity")

# Defence in depth: even with a live listener, a cached entry is re-read after this long.
CACHE_TTL_SECONDS = 300.0
CACHE_SIZE = 50_000
# The longest a token naming a revocable provider session may live. A revocation is kept this long
# (plus the clock leeway), and longer-lived session tokens are refused — so a purged revocation can
# never readmit a token of that session.
MAX_SESSION_TOKEN_LIFETIME = timedelta(hours=24)
# The revocation set is swept of expired entries when it has grown by this many since the last sweep.
_SWEEP_EVERY = 1024

# What erasing a user's data takes, per domain (planning rows, queued solves): run in the tombstone's
# transaction, so a deletion is complete or not at all.
Eraser = Callable[[Connection, uuid.UUID], Awaitable[None]]


class Refused(Exception):
    """The token's user or session may not act (→ the generic 401). `cause` is for a debug log."""

    def __init__(self, cause: str) -> None:
        self.cause = cause
        super().__init__(cause)


class Upsert(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    # Nothing written: same values, an older event than the stored one, or a tombstoned user.
    UNCHANGED = "unchanged"


class Tombstone(enum.StrEnum):
    TOMBSTONED = "tombstoned"
    ALREADY = "already"


@dataclass(slots=True)
class _Entry:
    user: UserRef
    expires: float


class IdentityService:
    """One per app instance (`AppState.identity`)."""

    def __init__(
        self,
        db: Database,
        *,
        revocable_providers: Collection[str] = (),
        erasers: Sequence[Eraser] = (),
        leeway: timedelta = timedelta(seconds=5),
    ) -> None:
        self._db = db
        self._revocable = frozenset(revocable_providers)
        self._erasers = tuple(erasers)
        self._leeway = leeway
        self._users: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        # (provider, session id) → when the revocation may be forgotten (epoch seconds).
        self._revoked: dict[tuple[str, str], float] = {}
        self._revoked_at_sweep = 0
        # False until the listener is connected and the revocation set is loaded; while False,
        # nothing is served from (or written to) the caches.
        self.live = False
        # Bumped by every announcement: a lookup that raced one is not cached (it may be stale).
        self._generation = 0

    # --- the gate's questions ----------------------------------------------------------------

    async def user_for(self, claims: Claims) -> UserRef:
        """The live user the claims belong to; Refused for a tombstone or a revoked session."""
        if claims.session_id is not None and claims.provider in self._revocable:
            if self._outlives_revocations(claims):
                raise Refused("a session token living longer than revocations are kept")
            if await self.is_revoked(claims.provider, claims.session_id):
                raise Refused("provider session revoked")
        user = await self.resolve(claims.provider, claims.subject, claims.email)
        if user.deleted:
            raise Refused("user deleted")
        return user

    def _outlives_revocations(self, claims: Claims) -> bool:
        issued = claims.issued_at if claims.issued_at is not None else time.time()
        return claims.expires_at - issued > MAX_SESSION_TOKEN_LIFETIME.total_seconds()

    async def resolve(self, provider: str, subject: str, email: str | None) -> UserRef:
        """The user for (provider, subject), created on first sight."""
        key = (provider, subject)
        if self.live:
            entry = self._users.get(key)
            if entry is not None and entry.expires > time.monotonic():
                return entry.user
        generation = self._generation
        user = await self._resolve(provider, subject, email)
        if self.live and generation == self._generation:
            self._remember(key, user)
        return user

    async def _resolve(self, provider: str, subject: str, email: str | None) -> UserRef:
        for _ in range(3):
            # Privileged: the caller has no user id yet; (provider, subject) is looked up among all users.
            async with self._db.privileged() as conn:
                user = await store.resolve(conn, provider, subject, email)
            if user is not None:
                return user
        raise RuntimeError("could not resolve user after concurrent insert")  # pragma: no cover

    async def is_revoked(self, provider: str, session_id: str) -> bool:
        if self.live:
            return (provider, session_id) in self._revoked  # an expired entry only outlives its tokens
        # Privileged: revocations are the provider's, not a user's rows.
        async with self._db.privileged() as conn:
            return await store.is_revoked(conn, provider, session_id)

    def _remember(self, key: tuple[str, str], user: UserRef) -> None:
        self._users[key] = _Entry(user, time.monotonic() + CACHE_TTL_SECONDS)
        self._users.move_to_end(key)
        while len(self._users) > CACHE_SIZE:
            self._users.popitem(last=False)

    # --- changes from providers (webhooks, reconcile), in the caller's transaction --------------

    async def apply(self, conn: Connection, event: UserEvent) -> None:
        """The effect of one provider event."""
        if event.kind == "upsert":
            await self.upsert(conn, event.provider, event.user)
        elif event.kind == "delete":
            assert event.subject is not None
            await self.tombstone(conn, event.provider, event.subject)
        elif event.kind == "session_revoked":
            assert event.session_id is not None
            await self.revoke_session(conn, event.provider, event.session_id, event.subject)

    async def upsert(self, conn: Connection, provider: str, user: ProviderUser) -> Upsert:
        """Create or update (provider, subject) under the order and tombstone rules; announce a change."""
        inserted = await store.upsert(conn, provider, user)
        if inserted is None:
            return Upsert.UNCHANGED
        # Every instance drops its cached copy, so the new email is served on the next request.
        await store.announce(conn, f"user:{provider}:{user.subject}")
        return Upsert.CREATED if inserted else Upsert.UPDATED

    async def tombstone(self, conn: Connection, provider: str, subject: str) -> Tombstone:
        """Tombstone (provider, subject), erase their data, and refuse their tokens everywhere."""
        user_id, newly = await store.tombstone(conn, provider, subject)
        for erase in self._erasers:
            await erase(conn, user_id)
        # Also when already tombstoned: a redundant announcement costs one cache miss, a missing one
        # could leave a token accepted.
        await store.announce(conn, f"user:{provider}:{subject}")
        return Tombstone.TOMBSTONED if newly else Tombstone.ALREADY

    async def revoke_session(
        self, conn: Connection, provider: str, session_id: str, subject: str | None
    ) -> None:
        # Kept as long as a session token may live (plus the clock leeway), so a purged revocation
        # can never readmit one. Expired ones are purged by the webhook janitor, not here:
        # concurrent revocations would lock the same old rows and wait on each other.
        expires_at = utcnow() + MAX_SESSION_TOKEN_LIFETIME + self._leeway
        await store.revoke(conn, provider, session_id, subject, expires_at)
        await store.announce(conn, f"session:{provider}:{session_id}")

    async def list_users(self, limit: int, cursor: Cursor | None) -> Sequence[store.UserRecord]:
        """Every user, newest first: the admin listing (across users by nature)."""
        # Privileged: the admin listing reads every user (the route checked ADMIN_ROLE).
        async with self._db.privileged() as conn:
            return await store.list_users(conn, limit, cursor)

    async def live_subjects(self, provider: str) -> set[str]:
        # Privileged: reconcile compares every user of a provider with the provider's list.
        async with self._db.privileged() as conn:
            return await store.live_subjects(conn, provider)

    async def purge_expired_revocations(self) -> int:
        # Privileged: housekeeping of the provider's revocations.
        async with self._db.privileged() as conn:
            return await store.purge_expired_revocations(conn)

    # --- coherence: what the listener calls --------------------------------------------------

    async def go_live(self) -> None:
        """The listener is connected: start caching from a fresh view of the database."""
        # Privileged: every live revocation, whoever's session it ended.
        async with self._db.privileged() as conn:
            rows = await store.live_revocations(conn)
        self._generation += 1
        self._users.clear()
        # A union, not a replacement: announcements that arrived while we read are kept.
        self._revoked.update(
            {(row["provider"], row["session_id"]): row["expires_at"].timestamp() for row in rows}
        )
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

    def announced(self, payload: str) -> None:
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
