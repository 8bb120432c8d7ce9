"""Recovery from missed deliveries: bring local users in line with a provider's user list.

The same rules as the webhooks (`upsert_user`, `tombstone_user`): an older record never
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
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.db import Database
from service.webhooks.handlers import Tombstone, Upsert, tombstone_user, upsert_user
from service.webhooks.payloads import Provider, ProviderUser
from service.webhooks.provider_api import fetch_user, iter_users

__all__ = ["MassTombstoneRefused", "ReconcileSummary", "reconcile_users"]

# A wrong API key (another instance's, a staging project's) makes every local user look gone, and
# tombstoning erases data for good. Refuse to tombstone more than this share of the provider's
# live local users (and more than a handful) unless the operator says so explicitly.
MASS_TOMBSTONE_FRACTION = 0.5
MASS_TOMBSTONE_FLOOR = 10
# Tombstones are applied this many per transaction: short transactions, few round trips.
TOMBSTONE_BATCH = 100

_LIVE_SUBJECTS = text("SELECT subject FROM users WHERE provider = :provider AND deleted_at IS NULL")

Progress = Callable[[str], None]


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


@asynccontextmanager
async def _unit(db: Database, dry_run: bool) -> AsyncIterator[AsyncSession]:
    """One transaction on the privileged path; a dry run rolls it back, so it writes nothing (its
    NOTIFYs are dropped with it) yet counts exactly what a real run would do."""
    async with db.sessions() as session:
        await session.begin()
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        if dry_run:
            await session.rollback()
        else:
            await session.commit()


async def _apply(session: AsyncSession, provider: Provider, user: ProviderUser) -> Upsert | Tombstone:
    if user.deleted:
        return await tombstone_user(session, provider, user.subject)
    return await upsert_user(session, provider, user)


async def _live_subjects(db: Database, provider: Provider) -> set[str]:
    async with db.privileged_transaction() as session:
        return set((await session.execute(_LIVE_SUBJECTS, {"provider": provider})).scalars())


def _check_not_mass_tombstone(gone: int, live: int, provider: Provider) -> None:
    limit = max(MASS_TOMBSTONE_FLOOR, math.floor(live * MASS_TOMBSTONE_FRACTION))
    if gone > limit:
        raise MassTombstoneRefused(
            f"{provider}: {gone} of {live} local users are unknown to the provider; refusing to "
            "tombstone them (is the API key for the right instance?). Re-run with "
            "--allow-mass-tombstone if this is really so."
        )


async def reconcile_users(
    provider: Provider,
    settings: Settings,
    db: Database,
    http: httpx.AsyncClient,
    *,
    dry_run: bool = False,
    allow_mass_tombstone: bool = False,
    progress: Progress | None = None,
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
    async for page in iter_users(provider, settings, http):
        async with _unit(db, dry_run) as session:
            for user in page:
                summary.count(await _apply(session, provider, user))
        seen.update(user.subject for user in page)
        pages += 1
        report(f"{provider}: page {pages}, {len(seen)} users read")

    live = await _live_subjects(db, provider)
    candidates = sorted(live - seen)
    report(f"{provider}: {len(candidates)} local users not listed; confirming each with the provider")
    gone: list[str] = []
    for subject in candidates:
        found = await fetch_user(provider, subject, settings, http)
        if found is None:
            gone.append(subject)
            continue
        # Listed after all: paging skipped it. Apply it like any other.
        async with _unit(db, dry_run) as session:
            summary.count(await _apply(session, provider, found))

    if not allow_mass_tombstone:
        _check_not_mass_tombstone(len(gone), len(live), provider)
    for start in range(0, len(gone), TOMBSTONE_BATCH):
        async with _unit(db, dry_run) as session:
            for subject in gone[start : start + TOMBSTONE_BATCH]:
                summary.count(await tombstone_user(session, provider, subject))
        report(f"{provider}: {min(start + TOMBSTONE_BATCH, len(gone))}/{len(gone)} tombstoned")
    return summary
