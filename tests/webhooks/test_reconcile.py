"""Reconcile against respx-mocked provider APIs: creates, updates, tombstones; --dry-run writes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import text

from scripts import reconcile_users as cli
from service.config import Settings
from service.core.db import Database
from service.main import identity_for
from service.providers.api import PAGE_SIZE, ProviderAPIError
from service.providers.events import ProviderUser
from service.users.identity import IdentityService
from service.webhooks.reconcile import MassTombstoneRefused, ReconcileSummary, reconcile_users
from tests.kit.sql import SqlAdmin
from tests.webhooks.conftest import insert_planning_rows, planning_counts

CLERK_API = "https://clerk-api.test"
WORKOS_API = "https://workos-api.test"
SUPABASE_URL = "https://ref.supabase-api.test"
PROVIDER_SETTINGS: dict[str, Any] = {
    "clerk_secret_key": "sk_test_reconcile",
    "clerk_api_url": CLERK_API,
    "workos_api_key": "sk_workos_reconcile",
    "workos_api_url": WORKOS_API,
    "supabase_service_role_key": "service-role-reconcile",
    "supabase_url": SUPABASE_URL,
}
UPDATED_MS = 1_700_000_000_000


def clerk_json(n: int, *, email: str | None = None) -> dict[str, Any]:
    return {
        "id": f"user_{n:03d}",
        "primary_email_address_id": "idn_1",
        "email_addresses": [{"id": "idn_1", "email_address": email or f"u{n}@example.com"}],
        "first_name": "User",
        "last_name": str(n),
        "updated_at": UPDATED_MS + n,
    }


def as_user(item: dict[str, Any]) -> ProviderUser:
    email = item["email_addresses"][0]["email_address"]
    updated = datetime.fromtimestamp(item["updated_at"] / 1000, UTC)
    return ProviderUser(item["id"], email, f"{item['first_name']} {item['last_name']}", updated)


class FakeClerk:
    """Clerk's Backend API: offset paging over `listed`; `GET /v1/users/{id}` knows `extra` too."""

    def __init__(self, listed: list[dict[str, Any]], extra: list[dict[str, Any]] | None = None) -> None:
        self.listed = listed
        self.by_id = {item["id"]: item for item in [*listed, *(extra or [])]}
        self.lookups: list[str] = []

    def mount(self, router: respx.MockRouter) -> None:
        router.get(f"{CLERK_API}/v1/users").mock(side_effect=self.page)
        router.get(url__regex=rf"^{CLERK_API}/v1/users/[^/?]+$").mock(side_effect=self.one)

    def page(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer sk_test_reconcile"
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        return httpx.Response(200, json=self.listed[offset : offset + limit])

    def one(self, request: httpx.Request) -> httpx.Response:
        subject = request.url.path.rsplit("/", 1)[1]
        self.lookups.append(subject)
        item = self.by_id.get(subject)
        return httpx.Response(404, json={"errors": []}) if item is None else httpx.Response(200, json=item)


@pytest.fixture
def settings(settings_for: Callable[..., Settings]) -> Settings:
    return settings_for(**PROVIDER_SETTINGS)


async def arrange(db: Database, listed: list[dict[str, Any]]) -> dict[str, uuid.UUID]:
    """Local state before the run: one current user, one stale, one tombstoned, two the provider
    deleted (one with planning data), one paging skipped, and a user of another provider."""
    identity = IdentityService(db)
    async with db.privileged() as conn:
        await identity.upsert(conn, "clerk", as_user(listed[0]))
        stale = as_user(clerk_json(1, email="old@example.com"))
        await identity.upsert(
            conn,
            "clerk",
            ProviderUser(stale.subject, stale.email, stale.display_name, datetime(2020, 1, 1, tzinfo=UTC)),
        )
        await identity.tombstone(conn, "clerk", listed[2]["id"])
        for subject in ("user_gone_a", "user_gone_b", "user_skipped"):
            await identity.upsert(conn, "clerk", ProviderUser(subject, "x@example.com", None, None))
        await identity.upsert(conn, "workos", ProviderUser("user_gone_a", "w@example.com", None, None))
        await identity.tombstone(conn, "clerk", "user_long_gone")
        ids = await conn.fetch("SELECT subject, id FROM users WHERE provider = 'clerk'")
    return {row["subject"]: row["id"] for row in ids}


async def snapshot(db: SqlAdmin) -> list[tuple[Any, ...]]:
    async with db.transaction() as session:
        users = (
            await session.execute(
                text(
                    "SELECT provider, subject, email, display_name, provider_updated_at, deleted_at, updated_at "
                    "FROM users ORDER BY provider, subject"
                )
            )
        ).all()
        planning = (await session.execute(text("SELECT count(*) FROM sessions"))).scalar_one()
    return [tuple(row) for row in users] + [("sessions", planning)]


EXPECTED = ReconcileSummary(
    created=247,  # 250 listed, less the current, the stale and the tombstoned
    updated=2,  # the stale user, and the one paging skipped (confirmed, then applied)
    tombstoned=2,
    unchanged=2,  # the current user, and the tombstone that stays one
)


async def test_reconcile_creates_updates_and_tombstones_across_pages(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    settings: Settings,
    clean_db: SqlAdmin,
    service_db: Database,
) -> None:
    listed = [clerk_json(n) for n in range(250)]  # three pages of PAGE_SIZE = 100
    assert len(listed) > 2 * PAGE_SIZE
    fake = FakeClerk(listed, extra=[{**clerk_json(999), "id": "user_skipped"}])
    fake.mount(router)
    ids = await arrange(service_db, listed)
    await insert_planning_rows(clean_db, ids["user_gone_a"])
    messages: list[str] = []

    summary = await reconcile_users(
        "clerk", settings, service_db, identity_for(service_db, settings), http, progress=messages.append
    )

    assert summary == EXPECTED
    assert sorted(fake.lookups) == ["user_gone_a", "user_gone_b", "user_skipped"]
    async with clean_db.transaction() as session:
        rows = {
            (row.provider, row.subject): row
            for row in (
                await session.execute(text("SELECT provider, subject, email, deleted_at FROM users"))
            ).all()
        }
    assert rows[("clerk", "user_001")].email == "u1@example.com"
    assert rows[("clerk", "user_002")].deleted_at is not None
    assert rows[("clerk", "user_249")].email == "u249@example.com"
    assert rows[("clerk", "user_skipped")].deleted_at is None
    for subject in ("user_gone_a", "user_gone_b"):
        assert rows[("clerk", subject)].deleted_at is not None
        assert rows[("clerk", subject)].email is None
    assert rows[("workos", "user_gone_a")].deleted_at is None  # another provider's user is untouched
    assert await planning_counts(clean_db, ids["user_gone_a"]) == (0, 0, 0)
    assert any("page 3" in message for message in messages)

    # A second run finds nothing to do.
    again = await reconcile_users("clerk", settings, service_db, identity_for(service_db, settings), http)
    assert again == ReconcileSummary(unchanged=250 + 1)


async def test_dry_run_counts_the_same_and_writes_nothing(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    settings: Settings,
    clean_db: SqlAdmin,
    service_db: Database,
) -> None:
    listed = [clerk_json(n) for n in range(250)]
    FakeClerk(listed, extra=[{**clerk_json(999), "id": "user_skipped"}]).mount(router)
    ids = await arrange(service_db, listed)
    await insert_planning_rows(clean_db, ids["user_gone_a"])
    before = await snapshot(clean_db)

    summary = await reconcile_users(
        "clerk", settings, service_db, identity_for(service_db, settings), http, dry_run=True
    )

    assert summary == EXPECTED
    assert await snapshot(clean_db) == before


async def test_workos_cursor_pages_and_tombstone(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    settings: Settings,
    clean_db: SqlAdmin,
    service_db: Database,
) -> None:
    users = [
        {
            "object": "user",
            "id": f"user_01W{n:03d}",
            "email": f"w{n}@example.com",
            "updated_at": "2024-05-01T00:00:00Z",
        }
        for n in range(150)
    ]

    def page(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("after")
        start = 0 if after is None else next(i for i, u in enumerate(users) if u["id"] == after) + 1
        chunk = users[start : start + PAGE_SIZE]
        more = start + PAGE_SIZE < len(users)
        return httpx.Response(
            200, json={"data": chunk, "list_metadata": {"after": chunk[-1]["id"] if more else None}}
        )

    router.get(f"{WORKOS_API}/user_management/users").mock(side_effect=page)
    router.get(f"{WORKOS_API}/user_management/users/user_01GONE").respond(404, json={"message": "not found"})
    async with service_db.privileged() as conn:
        await IdentityService(service_db).upsert(
            conn, "workos", ProviderUser("user_01GONE", "g@example.com", None, None)
        )

    summary = await reconcile_users("workos", settings, service_db, identity_for(service_db, settings), http)
    assert summary == ReconcileSummary(created=150, tombstoned=1)


async def test_supabase_soft_deleted_users_are_tombstoned_not_kept(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    settings: Settings,
    clean_db: SqlAdmin,
    service_db: Database,
) -> None:
    # The admin API lists soft-deleted users (deleted_at set); the webhook treats them as deleted,
    # so reconcile must too: the local live one is tombstoned and erased, the unknown one not created.
    def admin_user(n: int, deleted_at: str | None) -> dict[str, Any]:
        return {
            "id": f"00000000-0000-0000-0000-{n:012d}",
            "email": f"s{n}@example.com",
            "updated_at": "2024-05-01T10:00:00Z",
            "deleted_at": deleted_at,
        }

    listed = [
        admin_user(1, None),
        admin_user(2, "2024-05-02T10:00:00Z"),
        admin_user(3, "2024-05-02T10:00:00Z"),
    ]
    router.get(f"{SUPABASE_URL}/auth/v1/admin/users").respond(200, json={"users": listed})
    async with service_db.privileged() as conn:
        await IdentityService(service_db).upsert(
            conn, "supabase", ProviderUser(listed[1]["id"], "s2@example.com", None, None)
        )
        soft_deleted = await conn.fetchval("SELECT id FROM users")
    await insert_planning_rows(clean_db, soft_deleted)

    summary = await reconcile_users(
        "supabase", settings, service_db, identity_for(service_db, settings), http
    )

    assert summary == ReconcileSummary(created=1, tombstoned=2)
    async with clean_db.transaction() as session:
        result = await session.execute(text("SELECT subject, deleted_at IS NOT NULL AS deleted FROM users"))
        rows = {row.subject: row.deleted for row in result}
    assert rows == {listed[0]["id"]: False, listed[1]["id"]: True, listed[2]["id"]: True}
    assert await planning_counts(clean_db, soft_deleted) == (0, 0, 0)


async def test_mass_tombstone_is_refused_unless_allowed(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    settings: Settings,
    clean_db: SqlAdmin,
    service_db: Database,
) -> None:
    # The API key of an empty instance: every local user looks deleted.
    FakeClerk([]).mount(router)
    async with service_db.privileged() as conn:
        for n in range(12):
            await IdentityService(service_db).upsert(
                conn, "clerk", ProviderUser(f"user_live_{n}", None, None, None)
            )
    before = await snapshot(clean_db)
    with pytest.raises(MassTombstoneRefused):
        await reconcile_users("clerk", settings, service_db, identity_for(service_db, settings), http)
    assert await snapshot(clean_db) == before

    summary = await reconcile_users(
        "clerk", settings, service_db, identity_for(service_db, settings), http, allow_mass_tombstone=True
    )
    assert summary == ReconcileSummary(tombstoned=12)


async def test_provider_failure_tombstones_nothing(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    settings: Settings,
    clean_db: SqlAdmin,
    service_db: Database,
) -> None:
    router.get(f"{CLERK_API}/v1/users").respond(500)
    async with service_db.privileged() as conn:
        await IdentityService(service_db).upsert(conn, "clerk", ProviderUser("user_safe", None, None, None))
    with pytest.raises(ProviderAPIError):
        await reconcile_users("clerk", settings, service_db, identity_for(service_db, settings), http)
    async with clean_db.transaction() as session:
        deleted = (await session.execute(text("SELECT deleted_at FROM users"))).scalar_one()
    assert deleted is None


async def test_command_line_dry_run_prints_a_summary(
    router: respx.MockRouter,
    clean_db: SqlAdmin,
    migrated_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    FakeClerk([clerk_json(n) for n in range(3)]).mount(router)
    for name, value in {
        "ENVIRONMENT": "test",
        "DATABASE_URL": migrated_url,
        "CLERK_SECRET_KEY": PROVIDER_SETTINGS["clerk_secret_key"],
        "CLERK_API_URL": CLERK_API,
    }.items():
        monkeypatch.setenv(name, value)
    # The command runs its own event loop, so it runs on a thread of its own here.
    status = await asyncio.to_thread(cli.main, ["--provider", "clerk", "--dry-run"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert captured.out.strip() == (
        "clerk: created=3 updated=0 tombstoned=0 unchanged=0 (dry run: nothing written)"
    )
    assert "page 1" in captured.err
    assert "sk_test_reconcile" not in captured.out + captured.err
    async with clean_db.transaction() as session:
        assert (await session.execute(text("SELECT count(*) FROM users"))).scalar_one() == 0


async def test_command_line_names_a_missing_key(
    clean_db: SqlAdmin, migrated_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("DATABASE_URL", migrated_url)
    monkeypatch.delenv("WORKOS_API_KEY", raising=False)
    status = await asyncio.to_thread(cli.main, ["--provider", "workos"])
    assert status == 2
    assert "WORKOS_API_KEY" in capsys.readouterr().err
