"""What deliveries do: once only, whatever the order, erasing on delete, refusing tokens everywhere."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from service.core.db import Database
from service.deps import app_state
from service.users.identity import MAX_SESSION_TOKEN_LIFETIME
from service.webhooks.ledger import purge_ledger
from tests.kit import MockProvider
from tests.kit.sql import SqlAdmin
from tests.webhooks.conftest import (
    CLERK,
    SUPABASE,
    WORKOS,
    ClerkAppFactory,
    clerk_deleted_event,
    clerk_session_event,
    clerk_signed,
    clerk_user_event,
    clients,
    insert_planning_rows,
    ledger_count,
    planning_counts,
    supabase_event,
    supabase_signed,
    user_count,
    user_row,
    workos_signed,
    workos_user_event,
)

T1, T2, T3 = 1_700_000_000_000, 1_700_000_100_000, 1_700_000_200_000


def ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


async def post(client: httpx.AsyncClient, path: str, delivery: tuple[bytes, dict[str, str]]) -> None:
    body, headers = delivery
    response = await client.post(path, content=body, headers=headers)
    assert response.status_code == 204, response.text


# --- exactly once -----------------------------------------------------------------------------------


async def test_sequential_duplicate_has_no_second_effect(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    delivery = clerk_signed(clerk_user_event("user_dup", email="first@example.com", updated_ms=T1))
    await post(hooks, CLERK, delivery)
    # Make a second application observable: were the delivery applied again, the email would return.
    async with clean_db.transaction() as session:
        await session.execute(
            text(
                "UPDATE users SET email = 'changed@example.com', provider_updated_at = NULL WHERE subject = 'user_dup'"
            )
        )
    await post(hooks, CLERK, delivery)
    row = await user_row(clean_db, "clerk", "user_dup")
    assert row is not None and row.email == "changed@example.com"
    assert await ledger_count(clean_db) == 1


@pytest.mark.parametrize("provider", ["clerk", "workos"])
async def test_concurrent_duplicates_have_one_effect(
    provider: str, hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    if provider == "clerk":
        path, delivery = CLERK, clerk_signed(clerk_user_event("user_race", kind="user.created"))
    else:
        path, delivery = WORKOS, workos_signed(workos_user_event("user_01RACE", kind="user.created"))
    body, headers = delivery
    responses = await asyncio.gather(*(hooks.post(path, content=body, headers=headers) for _ in range(4)))
    assert [r.status_code for r in responses] == [204] * 4
    assert await ledger_count(clean_db) == 1
    assert await user_count(clean_db) == 1


async def test_concurrent_duplicate_deletions_erase_once(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    body, headers = clerk_signed(clerk_deleted_event("user_gone_twice"))
    responses = await asyncio.gather(*(hooks.post(CLERK, content=body, headers=headers) for _ in range(3)))
    assert [r.status_code for r in responses] == [204] * 3
    assert await ledger_count(clean_db) == 1
    row = await user_row(clean_db, "clerk", "user_gone_twice")
    assert row is not None and row.deleted


async def test_supabase_replays_are_idempotent(hooks: httpx.AsyncClient, clean_db: SqlAdmin) -> None:
    subject = "00000000-0000-0000-0000-0000000000c1"
    delivery = supabase_signed(supabase_event("UPDATE", subject, email="one@example.com"))
    for _ in range(3):
        await post(hooks, SUPABASE, delivery)
    row = await user_row(clean_db, "supabase", subject)
    assert row is not None and row.email == "one@example.com" and row.display_name == "Supa Base"
    assert await user_count(clean_db) == 1


# --- order ------------------------------------------------------------------------------------------


async def test_updated_before_created_converges(hooks: httpx.AsyncClient, clean_db: SqlAdmin) -> None:
    await post(hooks, CLERK, clerk_signed(clerk_user_event("user_o", email="new@example.com", updated_ms=T2)))
    await post(
        hooks,
        CLERK,
        clerk_signed(clerk_user_event("user_o", kind="user.created", email="old@example.com", updated_ms=T1)),
    )
    row = await user_row(clean_db, "clerk", "user_o")
    assert row is not None
    assert (row.email, row.provider_updated_at) == ("new@example.com", ms(T2))


async def test_older_update_after_newer_is_ignored(hooks: httpx.AsyncClient, clean_db: SqlAdmin) -> None:
    await post(hooks, CLERK, clerk_signed(clerk_user_event("user_n", email="t3@example.com", updated_ms=T3)))
    await post(hooks, CLERK, clerk_signed(clerk_user_event("user_n", email="t2@example.com", updated_ms=T2)))
    await post(
        hooks,
        WORKOS,
        workos_signed(
            workos_user_event("user_01N", email="late@example.com", updated_at="2024-05-02T00:00:00Z")
        ),
    )
    await post(
        hooks,
        WORKOS,
        workos_signed(
            workos_user_event("user_01N", email="early@example.com", updated_at="2024-05-01T00:00:00Z")
        ),
    )
    clerk_row = await user_row(clean_db, "clerk", "user_n")
    workos_row = await user_row(clean_db, "workos", "user_01N")
    assert clerk_row is not None and clerk_row.email == "t3@example.com"
    assert workos_row is not None and workos_row.email == "late@example.com"


async def test_newer_update_applies_and_sets_the_display_name(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    await post(hooks, CLERK, clerk_signed(clerk_user_event("user_u", email="a@example.com", updated_ms=T1)))
    await post(
        hooks,
        CLERK,
        clerk_signed(clerk_user_event("user_u", email="b@example.com", first_name="Augusta", updated_ms=T2)),
    )
    row = await user_row(clean_db, "clerk", "user_u")
    assert row is not None
    assert (row.email, row.display_name, row.provider_updated_at) == (
        "b@example.com",
        "Augusta Lovelace",
        ms(T2),
    )


async def test_deleted_then_late_update_stays_deleted(hooks: httpx.AsyncClient, clean_db: SqlAdmin) -> None:
    await post(hooks, CLERK, clerk_signed(clerk_user_event("user_d", kind="user.created", updated_ms=T1)))
    await post(hooks, CLERK, clerk_signed(clerk_deleted_event("user_d", sent_ms=T2)))
    # Late, even with a newer updated_at than anything seen: a tombstone is final.
    await post(
        hooks, CLERK, clerk_signed(clerk_user_event("user_d", email="back@example.com", updated_ms=T3))
    )
    row = await user_row(clean_db, "clerk", "user_d")
    assert row is not None and row.deleted
    assert (row.email, row.display_name) == (None, None)


async def test_deletion_of_a_never_seen_user_blocks_a_late_created(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    subject = "00000000-0000-0000-0000-0000000000d1"
    await post(hooks, SUPABASE, supabase_signed(supabase_event("DELETE", subject)))
    await post(hooks, SUPABASE, supabase_signed(supabase_event("INSERT", subject)))
    await post(hooks, WORKOS, workos_signed(workos_user_event("user_01X", kind="user.deleted")))
    await post(hooks, WORKOS, workos_signed(workos_user_event("user_01X", kind="user.created")))
    for provider, who in (("supabase", subject), ("workos", "user_01X")):
        row = await user_row(clean_db, provider, who)
        assert row is not None and row.deleted and row.email is None, provider


async def test_supabase_soft_delete_update_is_a_deletion(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    subject = "00000000-0000-0000-0000-0000000000d2"
    await post(hooks, SUPABASE, supabase_signed(supabase_event("INSERT", subject)))
    payload = supabase_event("UPDATE", subject)
    payload["record"]["deleted_at"] = "2024-05-02 10:00:00+00"
    await post(hooks, SUPABASE, supabase_signed(payload))
    row = await user_row(clean_db, "supabase", subject)
    assert row is not None and row.deleted


# --- erasure ----------------------------------------------------------------------------------------


async def test_deletion_erases_only_that_users_planning_data(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    for subject in ("user_erased", "user_kept"):
        await post(hooks, CLERK, clerk_signed(clerk_user_event(subject, kind="user.created")))
    erased = await user_row(clean_db, "clerk", "user_erased")
    kept = await user_row(clean_db, "clerk", "user_kept")
    assert erased is not None and kept is not None
    for user in (erased, kept):
        await insert_planning_rows(clean_db, user.id)
    assert await planning_counts(clean_db, erased.id) == (1, 1, 1)

    await post(hooks, CLERK, clerk_signed(clerk_deleted_event("user_erased")))
    assert await planning_counts(clean_db, erased.id) == (0, 0, 0)
    assert await planning_counts(clean_db, kept.id) == (1, 1, 1)


async def test_failed_effect_leaves_nothing_and_the_retry_applies(
    hooks_app: FastAPI, hooks: httpx.AsyncClient, clean_db: SqlAdmin, monkeypatch: pytest.MonkeyPatch
) -> None:
    await post(hooks, CLERK, clerk_signed(clerk_user_event("user_retry", kind="user.created")))
    user = await user_row(clean_db, "clerk", "user_retry")
    assert user is not None
    await insert_planning_rows(clean_db, user.id)
    body, headers = clerk_signed(clerk_deleted_event("user_retry"))

    async def broken(*_args: object) -> None:
        raise RuntimeError("simulated failure after the tombstone was written")

    with monkeypatch.context() as patch:
        patch.setattr(app_state(hooks_app).identity, "_erasers", (broken,))
        failed = await hooks.post(CLERK, content=body, headers=headers)
    assert failed.status_code == 503
    row = await user_row(clean_db, "clerk", "user_retry")
    assert row is not None and not row.deleted  # the tombstone rolled back with the failure
    assert await ledger_count(clean_db) == 1  # only the created event

    retried = await hooks.post(CLERK, content=body, headers=headers)
    assert retried.status_code == 204
    row = await user_row(clean_db, "clerk", "user_retry")
    assert row is not None and row.deleted
    assert await planning_counts(clean_db, user.id) == (0, 0, 0)


# --- at once, on every instance ------------------------------------------------------------------


async def me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})


async def sync(*apps: FastAPI) -> None:
    """Every announcement committed so far has been applied on these instances."""
    for app in apps:
        await app_state(app).listener.sync()


async def until_live(*apps: FastAPI) -> None:
    """Each instance's listener is up, so its directory serves from cache: the case worth testing
    (a blind directory reads the database on every request and would pass trivially)."""
    async with asyncio.timeout(10):
        # Polling: `live` is a plain flag the directory owns, with no event to wait on.
        while not all(app_state(app).identity.live for app in apps):  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_deleted_users_token_is_refused_on_every_instance(
    clerk_app: ClerkAppFactory, clerk: MockProvider, clean_db: SqlAdmin
) -> None:
    token = clerk.token("user_everywhere")
    async with clerk_app() as first, clerk_app() as second, clients(first, second) as (one, two):
        await until_live(first, second)
        # Warm both instances' caches (claims and subject → user).
        for client in (one, two, one, two):
            assert (await me(client, token)).status_code == 200
        user = await user_row(clean_db, "clerk", "user_everywhere")
        assert user is not None
        await insert_planning_rows(clean_db, user.id)

        await post(one, CLERK, clerk_signed(clerk_deleted_event("user_everywhere")))
        # The receiving instance answers 204 only once its own caches have caught up.
        assert (await me(one, token)).status_code == 401
        await sync(second)
        assert (await me(two, token)).status_code == 401
        # A fresh token for the same subject is refused too: the tombstone is the user, not the token.
        assert (await me(two, clerk.token("user_everywhere"))).status_code == 401
    assert await planning_counts(clean_db, user.id) == (0, 0, 0)


async def test_email_change_reaches_a_warm_second_instance(
    clerk_app: ClerkAppFactory, clerk: MockProvider, clean_db: SqlAdmin
) -> None:
    token = clerk.token("user_email")
    async with clerk_app() as first, clerk_app() as second, clients(first, second) as (one, two):
        await until_live(first, second)
        await post(one, CLERK, clerk_signed(clerk_user_event("user_email", email="before@example.com")))
        await sync(second)
        assert (await me(two, token)).json()["email"] == "before@example.com"
        await post(
            one, CLERK, clerk_signed(clerk_user_event("user_email", email="after@example.com", updated_ms=T3))
        )
        await sync(second)
        assert (await me(two, token)).json()["email"] == "after@example.com"


@pytest.mark.parametrize("kind", ["session.revoked", "session.ended", "session.removed"])
async def test_revoked_session_is_refused_everywhere_while_another_session_works(
    kind: str, clerk_app: ClerkAppFactory, clerk: MockProvider, clean_db: SqlAdmin
) -> None:
    revoked = clerk.token("user_sessions", sid="sess_revoked")
    other = clerk.token("user_sessions", sid="sess_other")
    async with clerk_app() as first, clerk_app() as second, clients(first, second) as (one, two):
        await until_live(first, second)
        for client in (one, two):
            for token in (revoked, other):
                assert (await me(client, token)).status_code == 200

        before = datetime.now(UTC)
        await post(one, CLERK, clerk_signed(clerk_session_event("sess_revoked", "user_sessions", kind)))
        assert (await me(one, revoked)).status_code == 401
        await sync(second)
        for client in (one, two):
            assert (await me(client, revoked)).status_code == 401
            assert (await me(client, other)).status_code == 200
        # A new token minted for the revoked session is refused as well.
        assert (await me(two, clerk.token("user_sessions", sid="sess_revoked"))).status_code == 401

    async with clean_db.transaction() as session:
        expires_at = (
            await session.execute(
                text("SELECT expires_at FROM revoked_sessions WHERE session_id = 'sess_revoked'")
            )
        ).scalar_one()
    kept_for = expires_at - before
    assert MAX_SESSION_TOKEN_LIFETIME < kept_for < MAX_SESSION_TOKEN_LIFETIME + timedelta(minutes=1)


# --- housekeeping ---------------------------------------------------------------------------------


async def expired_revocation(db: SqlAdmin) -> None:
    async with db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO revoked_sessions (provider, session_id, expires_at) "
                "VALUES ('clerk', 'sess_ancient', now() - interval '1 hour')"
            )
        )


async def revoked_ids(db: SqlAdmin) -> set[str]:
    async with db.transaction() as session:
        return set((await session.execute(text("SELECT session_id FROM revoked_sessions"))).scalars())


async def test_a_revocation_never_waits_on_expired_rows(hooks: httpx.AsyncClient, clean_db: SqlAdmin) -> None:
    # Spend this instance's janitor run, so only the revocation's own transaction is under test.
    await post(hooks, CLERK, clerk_signed(clerk_user_event("user_first")))
    await expired_revocation(clean_db)
    async with clean_db.transaction() as holder:
        # Another transaction holds the expired row (a concurrent purge would): a revocation that
        # purged inline would wait here, and concurrent ones could deadlock.
        await holder.execute(text("SELECT 1 FROM revoked_sessions FOR UPDATE"))
        delivery = asyncio.create_task(
            post(hooks, CLERK, clerk_signed(clerk_session_event("sess_new", "user_h")))
        )
        done, _ = await asyncio.wait({delivery}, timeout=5)
    await delivery
    assert done, "the revocation waited on a lock held on an expired revocation"
    assert await revoked_ids(clean_db) == {"sess_ancient", "sess_new"}


async def test_the_janitor_purges_expired_revocations(hooks: httpx.AsyncClient, clean_db: SqlAdmin) -> None:
    await expired_revocation(clean_db)
    # The first applied delivery of an app instance runs the (throttled) purge, whatever its kind.
    await post(hooks, CLERK, clerk_signed(clerk_user_event("user_h")))
    assert await revoked_ids(clean_db) == set()


async def test_ledger_rows_past_retention_are_purged(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin, service_db: Database
) -> None:
    async with clean_db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO webhook_events (provider, event_id, event_type, received_at) VALUES "
                "('clerk', 'msg_old', 'user.updated', now() - interval '8 days'), "
                "('clerk', 'msg_recent', 'user.updated', now() - interval '6 days')"
            )
        )
    # The first applied delivery of an app instance runs the (throttled) purge.
    await post(hooks, CLERK, clerk_signed(clerk_user_event("user_p"), msg_id="msg_now"))
    async with clean_db.transaction() as session:
        ids = set((await session.execute(text("SELECT event_id FROM webhook_events"))).scalars().all())
    assert ids == {"msg_recent", "msg_now"}
    assert await purge_ledger(service_db) == 0
