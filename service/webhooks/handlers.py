"""What a verified delivery does to the database: exactly once, order-safe, erasing on delete.

Each delivery is one transaction on the privileged path (user sync crosses users by nature): the
ledger row and the effect commit together or not at all, so a retry after a failure applies the
effect once, and two copies arriving at the same moment are serialized by the ledger's primary
key. The user-level functions (`upsert_user`, `tombstone_user`) are shared with reconcile, so a
webhook and a reconcile run follow the same rules.
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import Database, new_id, scope_rls_to, utcnow
from service.users.directory import (
    MAX_SESSION_TOKEN_LIFETIME,
    announce_user_changed,
    purge_expired_revocations,
    revoke_session,
)
from service.webhooks.payloads import ProviderUser, UserEvent

__all__ = [
    "LEDGER_RETENTION",
    "Delivery",
    "LedgerJanitor",
    "Tombstone",
    "Upsert",
    "apply_delivery",
    "purge_ledger",
    "purge_revocations",
    "record_delivery",
    "tombstone_user",
    "upsert_user",
]

log = logging.getLogger("routebook.webhooks")

# Svix retries for ~28 h and WorkOS for 3 days; a ledger row must outlive every retry of its event.
LEDGER_RETENTION = timedelta(days=7)
# The purges run at most this often per process, each in a transaction of its own: concurrent
# deliveries never contend for the same old rows, and housekeeping can never fail a delivery.
_PURGE_INTERVAL_SECONDS = 600.0


class Delivery(enum.StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


class Upsert(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    # Nothing written: same values, an older event than the stored one, or a tombstoned user.
    UNCHANGED = "unchanged"


class Tombstone(enum.StrEnum):
    TOMBSTONED = "tombstoned"
    ALREADY = "already"


_RECORD_DELIVERY = text(
    """
    INSERT INTO webhook_events (provider, event_id, event_type, received_at)
    VALUES (:provider, :event_id, :event_type, now())
    ON CONFLICT (provider, event_id) DO NOTHING
    RETURNING 1
    """
)

# One statement, so concurrent deliveries for one user serialize on the row: ON CONFLICT DO UPDATE
# evaluates its WHERE against the latest committed version. The WHERE is the whole rule set:
#   - a tombstone is final (a late created/updated never resurrects the user);
#   - an event older than the stored one is ignored (providers do not guarantee order); an event
#     without updated_at only fills a row that has none, since it cannot prove it is newer;
#   - identical values write nothing, so replays (Supabase has no event id) are free no-ops.
_UPSERT_USER = text(
    """
    INSERT INTO users AS u (id, provider, subject, email, display_name, provider_updated_at)
    VALUES (:id, :provider, :subject, :email, :display_name, :provider_updated_at)
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
)

# A never-seen user still gets a row: the tombstone is what stops a late `created` from
# resurrecting them. `deleted_at` keeps its first value; `newly` tells this statement set it.
_TOMBSTONE_USER = text(
    """
    INSERT INTO users AS u (id, provider, subject, deleted_at, updated_at)
    VALUES (:id, :provider, :subject, :now, :now)
    ON CONFLICT (provider, subject) DO UPDATE
        SET deleted_at = COALESCE(u.deleted_at, EXCLUDED.deleted_at),
            email = NULL,
            display_name = NULL,
            updated_at = CASE WHEN u.deleted_at IS NULL THEN EXCLUDED.updated_at ELSE u.updated_at END
    RETURNING id, (deleted_at = :now) AS newly
    """
)

# Taken before the tombstone is written: FOR UPDATE (unlike the NO KEY lock an UPDATE takes)
# conflicts with the KEY SHARE lock a planning insert's foreign-key check holds, so a session being
# created at this moment commits first, and the erase below sees it.
_LOCK_USER = text("SELECT 1 FROM users WHERE provider = :provider AND subject = :subject FOR UPDATE")
# Scenarios and solutions follow by ON DELETE CASCADE.
_ERASE_PLANNING = text("DELETE FROM sessions WHERE user_id = :id")
_PURGE_LEDGER = text("DELETE FROM webhook_events WHERE received_at < :cutoff")


async def record_delivery(session: AsyncSession, event: UserEvent) -> bool:
    """Enter the event in the ledger; False when it is already there (a duplicate delivery)."""
    assert event.event_id is not None
    result = await session.execute(
        _RECORD_DELIVERY,
        {"provider": event.provider, "event_id": event.event_id, "event_type": event.event_type},
    )
    return result.first() is not None


async def upsert_user(session: AsyncSession, provider: str, user: ProviderUser) -> Upsert:
    """Create or update (provider, subject) under the order and tombstone rules; announce a change.

    `user` comes from a `payloads` mapper, which has already refused what PostgreSQL cannot store.
    """
    result = await session.execute(
        _UPSERT_USER,
        {
            "id": new_id(),
            "provider": provider,
            "subject": user.subject,
            "email": user.email,
            "display_name": user.display_name,
            "provider_updated_at": user.updated_at,
        },
    )
    row = result.first()
    if row is None:
        return Upsert.UNCHANGED
    # Every instance drops its cached copy, so the new email is served on the next request.
    await announce_user_changed(session, provider, user.subject)
    return Upsert.CREATED if row.inserted else Upsert.UPDATED


async def tombstone_user(session: AsyncSession, provider: str, subject: str) -> Tombstone:
    """Tombstone (provider, subject), erase their planning data, and refuse their tokens everywhere."""
    await session.execute(_LOCK_USER, {"provider": provider, "subject": subject})
    result = await session.execute(
        _TOMBSTONE_USER, {"id": new_id(), "provider": provider, "subject": subject, "now": utcnow()}
    )
    row = result.one()
    user_id: uuid.UUID = row.id
    await _erase_planning_data(session, user_id)
    # Also when already tombstoned: a redundant announcement costs one cache miss, a missing one
    # could leave a token accepted.
    await announce_user_changed(session, provider, subject)
    return Tombstone.TOMBSTONED if row.newly else Tombstone.ALREADY


async def _erase_planning_data(session: AsyncSession, user_id: uuid.UUID) -> None:
    # FORCEd row-level security binds the tables' owner too: admit this user's rows first.
    await scope_rls_to(session, user_id)
    await session.execute(_ERASE_PLANNING, {"id": user_id})


async def _revoke_clerk_session(session: AsyncSession, event: UserEvent, leeway: timedelta) -> None:
    assert event.session_id is not None
    # Kept as long as the identity gate lets a session token live (plus its clock leeway), so a
    # purged revocation can never readmit a token. Expired ones are purged by the janitor, not
    # here: concurrent revocations would lock the same old rows and wait on each other.
    await revoke_session(
        session, event.provider, event.session_id, event.subject, MAX_SESSION_TOKEN_LIFETIME + leeway
    )


async def _apply_effect(session: AsyncSession, event: UserEvent, leeway: timedelta) -> None:
    if event.kind == "upsert":
        await upsert_user(session, event.provider, event.user)
    elif event.kind == "delete":
        assert event.subject is not None
        await tombstone_user(session, event.provider, event.subject)
    elif event.kind == "session_revoked":
        await _revoke_clerk_session(session, event, leeway)


async def apply_delivery(db: Database, event: UserEvent, *, leeway: timedelta) -> Delivery:
    """Apply one verified, parsed delivery in one transaction; a database error propagates with
    nothing committed (the caller answers 503 and the provider retries)."""
    if event.kind == "ignored":
        # Not entered in the ledger: there is no effect to protect, and Clerk sends many such events.
        return Delivery.IGNORED
    async with db.privileged_transaction() as session:
        # Supabase has no stable event id; its effects are idempotent by construction instead.
        if event.event_id is not None and not await record_delivery(session, event):
            return Delivery.DUPLICATE
        await _apply_effect(session, event, leeway)
    return Delivery.APPLIED


@dataclass
class LedgerJanitor:
    """Drops ledger rows older than every provider's retry window, and expired session revocations,
    at most once per interval."""

    retention: timedelta = LEDGER_RETENTION
    interval_seconds: float = _PURGE_INTERVAL_SECONDS
    _next_run: float = 0.0

    async def maybe_purge(self, db: Database) -> None:
        now = time.monotonic()
        if now < self._next_run:
            return
        self._next_run = now + self.interval_seconds
        try:
            await purge_ledger(db, self.retention)
            await purge_revocations(db)
        except Exception as exc:
            # Housekeeping only: the delivery already committed, so its answer stays 204.
            log.warning("webhook housekeeping failed (%s)", type(exc).__name__)


async def purge_ledger(db: Database, retention: timedelta = LEDGER_RETENTION) -> int:
    """Delete ledger rows older than `retention` in a short transaction of its own."""
    async with db.privileged_transaction() as session:
        result = await session.execute(_PURGE_LEDGER, {"cutoff": utcnow() - retention})
    return int(getattr(result, "rowcount", 0) or 0)


async def purge_revocations(db: Database) -> int:
    """Delete revocations past their expiry in a short transaction of its own."""
    async with db.privileged_transaction() as session:
        return await purge_expired_revocations(session)
