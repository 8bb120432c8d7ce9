"""Deliveries applied exactly once: each one's ledger row and its effect commit together or not at all.

Each delivery is one transaction on the privileged path (user sync crosses users by nature): a retry
after a failure applies the effect once, and two copies arriving at the same moment are serialized
by the ledger's primary key. The effect itself is the identity service's (`IdentityService.apply`)
for users and sessions, the workspace sync's (`WorkspaceSync.apply`) for organisations and
memberships.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from service.core.db import Connection, Database, utcnow
from service.providers.events import MembershipEvent, OrganizationEvent, ProviderEvent, UserEvent
from service.users.identity import IdentityService

log = logging.getLogger("routebook.webhooks")

# Svix retries for ~28 h and WorkOS for 3 days; a ledger row must outlive every retry of its event.
LEDGER_RETENTION = timedelta(days=7)
# The purges run at most this often per process, each in a transaction of its own: concurrent
# deliveries never contend for the same old rows, and housekeeping can never fail a delivery.
_PURGE_INTERVAL_SECONDS = 600.0

_RECORD = """
    INSERT INTO webhook_events (provider, event_id, event_type, received_at)
    VALUES ($1, $2, $3, now())
    ON CONFLICT (provider, event_id) DO NOTHING
    RETURNING 1
"""


class Delivery(enum.StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


class OrganizationSync(Protocol):
    """Applies organisation and membership events in the caller's transaction."""

    async def apply(self, conn: Connection, event: OrganizationEvent | MembershipEvent) -> None: ...


async def record_delivery(conn: Connection, event: ProviderEvent) -> bool:
    """Enter the event in the ledger; False when it is already there (a duplicate delivery)."""
    assert event.event_id is not None
    return await conn.fetchval(_RECORD, event.provider, event.event_id, event.event_type) is not None


async def apply_delivery(
    db: Database, identity: IdentityService, organizations: OrganizationSync, event: ProviderEvent
) -> Delivery:
    """Apply one verified, parsed delivery in one transaction; a database error propagates with
    nothing committed (the caller answers 503 and the provider retries)."""
    if isinstance(event, UserEvent) and event.kind == "ignored":
        # Not entered in the ledger: there is no effect to protect, and Clerk sends many such events.
        return Delivery.IGNORED
    # Privileged: a provider's event may create, change or erase any user or organisation.
    async with db.privileged() as conn:
        # Supabase has no stable event id; its effects are idempotent by construction instead.
        if event.event_id is not None and not await record_delivery(conn, event):
            return Delivery.DUPLICATE
        if isinstance(event, UserEvent):
            await identity.apply(conn, event)
        else:
            await organizations.apply(conn, event)
    return Delivery.APPLIED


async def purge_ledger(db: Database, retention: timedelta = LEDGER_RETENTION) -> int:
    """Delete ledger rows older than `retention` in a short transaction of its own."""
    # Privileged: the ledger is the providers', not a user's.
    async with db.privileged() as conn:
        status = await conn.execute("DELETE FROM webhook_events WHERE received_at < $1", utcnow() - retention)
    return int(status.split()[-1])


@dataclass
class LedgerJanitor:
    """Drops ledger rows older than every provider's retry window, and expired session revocations,
    at most once per interval."""

    retention: timedelta = LEDGER_RETENTION
    interval_seconds: float = _PURGE_INTERVAL_SECONDS
    _next_run: float = 0.0

    async def maybe_purge(self, db: Database, identity: IdentityService) -> None:
        now = time.monotonic()
        if now < self._next_run:
            return
        self._next_run = now + self.interval_seconds
        try:
            await purge_ledger(db, self.retention)
            await identity.purge_expired_revocations()
        except Exception as exc:
            # Housekeeping only: the delivery already committed, so its answer stays 204.
            log.warning("webhook housekeeping failed (%s)", type(exc).__name__)
