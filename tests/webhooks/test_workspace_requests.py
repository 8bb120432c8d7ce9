"""What membership webhooks do to the next planning request of a token that names the organisation:
a removal answers 404 on every instance, a role change applies at once, a deleted organisation is
gone — and a token issued before the change cannot undo it."""

from __future__ import annotations

import time

import httpx
from sqlalchemy import text

from tests.kit import MockProvider, Org
from tests.kit.sql import SqlAdmin
from tests.webhooks.conftest import CLERK, ClerkAppFactory, clerk_signed, clients
from tests.webhooks.test_handlers import post, sync, until_live
from tests.webhooks.test_workspace_hooks import (
    clerk_membership_event,
    clerk_org_event,
    role_in,
    workspace_row,
)

API = "/api/v1"
ORG = "org_2teamABCDEF"


def now_ms() -> int:
    """A provider event time at or after every token minted so far (tokens' `iat` is in seconds)."""
    return time.time_ns() // 1_000_000


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def sessions(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(f"{API}/sessions", headers=bearer(token))


async def create_session(client: httpx.AsyncClient, token: str, name: str = "Monday") -> httpx.Response:
    return await client.post(f"{API}/sessions", headers=bearer(token), json={"name": name})


async def test_a_member_removed_by_webhook_gets_404_on_every_instance_with_a_still_valid_token(
    clerk_app: ClerkAppFactory, clerk: MockProvider, clean_db: SqlAdmin
) -> None:
    token = clerk.token("user_leaving", org=Org(id=ORG, role="member"), expires_in=600)
    async with clerk_app() as first, clerk_app() as second, clients(first, second) as (one, two):
        await until_live(first, second)
        created = await create_session(one, token)
        assert created.status_code == 201, created.text
        for client in (one, two):  # warm both instances' membership caches
            assert (await sessions(client, token)).status_code == 200

        removed = clerk_membership_event("organizationMembership.deleted", "user_leaving", ORG, at=now_ms())
        await post(one, CLERK, clerk_signed(removed))
        # The receiving instance answers 204 once its own caches caught up; the other on NOTIFY.
        assert (await sessions(one, token)).status_code == 404
        await sync(second)
        for client in (one, two):
            for response in (
                await sessions(client, token),
                await client.get(f"{API}/sessions/{created.json()['id']}", headers=bearer(token)),
                await create_session(client, token),
            ):
                assert response.status_code == 404, response.text
                assert response.headers["content-type"] == "application/problem+json"
        # Their personal workspace is still theirs.
        personal = await one.get(f"{API}/sessions", headers=bearer(clerk.token("user_leaving")))
        assert personal.status_code == 200
    assert await role_in(clean_db, "clerk", ORG, "user_leaving") is None


async def test_a_token_issued_before_the_removal_cannot_restore_it_and_one_after_a_readd_can(
    clerk_app: ClerkAppFactory, clerk: MockProvider, clean_db: SqlAdmin
) -> None:
    before = clerk.token("user_back", org=Org(id=ORG, role="admin"), expires_in=600)
    removal_at = now_ms()
    async with clerk_app() as app, clients(app) as (client,):
        # The removal arrives before this token was ever seen: first sight must not re-create it.
        await post(
            client,
            CLERK,
            clerk_signed(
                clerk_membership_event("organizationMembership.deleted", "user_back", ORG, at=removal_at)
            ),
        )
        assert (await sessions(client, before)).status_code == 404
        readd = clerk_membership_event(
            "organizationMembership.created", "user_back", ORG, role="org:member", at=removal_at + 1000
        )
        await post(client, CLERK, clerk_signed(readd))
        assert (await sessions(client, before)).status_code == 200  # the re-add applies to every token
        # ...with the webhook's role, not the older token's claim of admin.
        assert await role_in(clean_db, "clerk", ORG, "user_back") == "member"


async def test_a_role_change_to_viewer_by_webhook_applies_to_the_next_request(
    clerk_app: ClerkAppFactory, clerk: MockProvider, clean_db: SqlAdmin
) -> None:
    token = clerk.token("user_demoted", org=Org(id=ORG, role="member"), expires_in=600)
    async with clerk_app() as first, clerk_app() as second, clients(first, second) as (one, two):
        await until_live(first, second)
        assert (await create_session(one, token, "before")).status_code == 201
        assert (await create_session(two, token, "before, too")).status_code == 201

        demoted = clerk_membership_event(
            "organizationMembership.updated", "user_demoted", ORG, role="org:viewer", at=now_ms()
        )
        await post(one, CLERK, clerk_signed(demoted))
        await sync(second)
        for client in (one, two):
            refused = await create_session(client, token, "after")
            assert refused.status_code == 403, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            listed = await sessions(client, token)
            assert listed.status_code == 200
            assert sorted(s["name"] for s in listed.json()["items"]) == ["before", "before, too"]
    assert await role_in(clean_db, "clerk", ORG, "user_demoted") == "viewer"


async def organisation_with_data(client: httpx.AsyncClient, clerk: MockProvider) -> list[str]:
    """Two members' tokens naming ORG, after each planned in it."""
    tokens = [
        clerk.token("user_owner", org=Org(id=ORG, role="admin"), expires_in=600),
        clerk.token("user_mate", org=Org(id=ORG, role="member"), expires_in=600),
    ]
    for token in tokens:
        session = await create_session(client, token)
        assert session.status_code == 201, session.text
        scenario = await client.post(
            f"{API}/sessions/{session.json()['id']}/scenarios",
            headers=bearer(token),
            json={"name": "plan", "request": {"any": "json"}},
        )
        assert scenario.status_code == 201, scenario.text
    return tokens


async def test_a_deleted_organisation_erases_its_data_and_tokens_naming_it_get_404(
    clerk_app: ClerkAppFactory, clerk: MockProvider, clean_db: SqlAdmin
) -> None:
    async with clerk_app() as first, clerk_app() as second, clients(first, second) as (one, two):
        await until_live(first, second)
        tokens = await organisation_with_data(one, clerk)
        listed = await sessions(two, tokens[0])
        assert listed.status_code == 200 and len(listed.json()["items"]) == 2
        workspace = await workspace_row(clean_db, "clerk", ORG)
        assert workspace is not None

        await post(one, CLERK, clerk_signed(clerk_org_event("organization.deleted", ORG, at=now_ms())))
        await sync(second)
        for client in (one, two):
            for token in tokens:
                assert (await sessions(client, token)).status_code == 404
        # A token minted afterwards, naming it, does not bring it back either.
        late = clerk.token("user_owner", org=Org(id=ORG, role="admin"))
        assert (await create_session(two, late)).status_code == 404
    row = await workspace_row(clean_db, "clerk", ORG)
    assert row is not None and row.deleted
    async with clean_db.transaction() as session:
        await session.execute(
            text("SELECT set_config('app.workspace_id', :w, true)"), {"w": str(workspace.id)}
        )
        counts = [
            (
                await session.execute(
                    text(f"SELECT count(*) FROM {table} WHERE workspace_id = :w"), {"w": workspace.id}
                )
            ).scalar_one()
            for table in ("sessions", "scenarios", "solutions")
        ]
    assert counts == [0, 0, 0]
