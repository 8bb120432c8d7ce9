"""Recovery from missed deliveries: bring local users in line with a provider's user list.

The same rules as the webhooks (the identity service's `upsert`, `tombstone`): an older record never
overwrites a newer one, a tombstone is final, a user the provider lists as deleted (Supabase's
soft delete) is tombstoned, and a user the provider no longer has is tombstoned and erased — but
only after the provider confirms it one user at a time, because offset paging skips a user
whenever another is deleted between two page requests.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass

import httpx

from service import providers
from service.config import Settings
from service.core.db import Connection, Database
from service.providers.events import ProviderUser
from service.users.identity import IdentityService, Tombstone, Upsert

__all__ = ["MassTombstoneRefused", "ReconcileSummary", "reconcile_users"]

# A wrong API key (another instance's, a staging project's) makes every local user look gone, and
# tombstoning erases data for good. Refuse to tombstone more than this share of the provider's
# live local users (and more than a handful) unless the operator says so explicitly.
MASS_TOMBSTONE_FRACTION = 0.5
MASS_TOMBSTONE_FLOOR = 10
# Tombstones are applied this many per transaction: short transactions, few round trips.
TOMBSTONE_BATCH = 100

ProgressReport = Callable[[str], None]


class MassTombstoneRefused(Exception):
    """Reconcile would tombstone so many users that a misconfiguration is more likely than reality."""


@dataclass
class ReconcileSummary:
    created: int = 0
    updated: int = 0
    tombstoned: int = 0
    unchanged: int = 0

    def count(self, result: Upsert | Tombstone) -> None:
        if result is Upsert.CREATED:
            self.created += 1
        elif result is Upsert.UPDATED:
            self.updated += 1
        elif result is Tombstone.TOMBSTONED:
            self.tombstoned += 1
        else:
            self.unchanged += 1

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _DryRun(Exception):
    """Raised to roll a dry run's transaction back."""


@asynccontextmanager
async def _unit(db: Database, dry_run: bool) -> AsyncIterator[Connection]:
    """One transaction on the privileged path; a dry run rolls it back, so it writes nothing (its
    NOTIFYs are dropped with it) yet counts exactly what a real run would do."""
    try:
        # Privileged: reconcile applies a provider's list to every user it names.
        async with db.privileged() as conn:
            yield conn
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass


async def _apply(
    identity: IdentityService, conn: Connection, provider: str, user: ProviderUser
) -> Upsert | Tombstone:
    if user.deleted:
        return await identity.tombstone(conn, provider, user.subject)
    return await identity.upsert(conn, provider, user)


def _check_not_mass_tombstone(gone: int, live: int, provider: str) -> None:
    limit = max(MASS_TOMBSTONE_FLOOR, math.floor(live * MASS_TOMBSTONE_FRACTION))
    if gone > limit:
        raise MassTombstoneRefused(
            f"{provider}: {gone} of {live} local users are unknown to the provider; refusing to "
            "tombstone them (is the API key for the right instance?). Re-run with "
            "--allow-mass-tombstone if this is really so."
        )


async def reconcile_users(
    provider: str,
    settings: Settings,
    db: Database,
    identity: IdentityService,
    http: httpx.AsyncClient,
    *,
    dry_run: bool = False,
    allow_mass_tombstone: bool = False,
    progress: ProgressReport | None = None,
) -> ReconcileSummary:
    """Upsert every user the provider lists, tombstone local users it confirms gone; return counts.

    Raises ValueError for a missing API key, ProviderAPIError when the provider fails (pages already
    applied stay applied: each is correct on its own), MassTombstoneRefused before tombstoning any
    user merely missing from the list.
    """
    report = progress or (lambda _message: None)
    summary = ReconcileSummary()
    seen: set[str] = set()
    pages = 0
    directory = providers.get(provider).user_directory(settings, http)
    async for page in directory.pages():
        async with _unit(db, dry_run) as conn:
            for user in page:
                summary.count(await _apply(identity, conn, provider, user))
        seen.update(user.subject for user in page)
        pages += 1
        report(f"{provider}: page {pages}, {len(seen)} users read")

    live = await identity.live_subjects(provider)
    candidates = sorted(live - seen)
    report(f"{provider}: {len(candidates)} local users not listed; confirming each with the provider")
    gone: list[str] = []
    for subject in candidates:
        found = await directory.fetch(subject)
        if found is None:
            gone.append(subject)
            continue
        # Listed after all: paging skipped it. Apply it like any other.
        async with _unit(db, dry_run) as conn:
            summary.count(await _apply(identity, conn, provider, found))

    if not allow_mass_tombstone:
        _check_not_mass_tombstone(len(gone), len(live), provider)
    for start in range(0, len(gone), TOMBSTONE_BATCH):
        async with _unit(db, dry_run) as conn:
            for subject in gone[start : start + TOMBSTONE_BATCH]:
                summary.count(await identity.tombstone(conn, provider, subject))
        report(f"{provider}: {min(start + TOMBSTONE_BATCH, len(gone))}/{len(gone)} tombstoned")
    return summary
