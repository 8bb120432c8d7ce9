"""Memberships from tokens and provider events: a token naming an organisation creates its workspace
and the membership on first sight with the mapped role, unless a newer provider event says
otherwise — a removal wins over every token issued before it, and a token issued after a re-add
gets in. A deleted organisation's data is erased and its tokens find nothing."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from service.deps import app_state
from service.workspaces import store
from service.workspaces.models import Role
from tests.kit import MockProvider, Org
from tests.kit.waiting import eventually
from tests.users.conftest import ProviderApp, ProviderAppFactory


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def workspace_of(env: ProviderApp, token: str) -> dict[str, Any] | None:
    """/users/me's workspace for the token; None when the request is 404."""
    me = await env.me(token)
    if me.status_code == 404:
        return None
    assert me.status_code == 200, me.text
    workspace: dict[str, Any] = me.json()["workspace"]
    return workspace


async def test_a_token_naming_an_organisation_creates_its_workspace_with_the_mapped_role(
    provider_app: ProviderAppFactory,
) -> None:
    clerk = MockProvider.clerk()
    async with provider_app(clerk, clerk_org_role_map="admin=admin,member=member,lead=admin") as env:
        roles = {}
        for subject, role in (("user_a", "member"), ("user_b", "billing"), ("user_c", "lead")):
            token = clerk.token(subject, org=Org(id="org_acme", role=role))
            workspace = await workspace_of(env, token)
            assert workspace is not None and workspace["kind"] == "organization"
            roles[subject] = (workspace["id"], workspace["role"])
        assert len({workspace_id for workspace_id, _ in roles.values()}) == 1  # one workspace
        assert {subject: role for subject, (_, role) in roles.items()} == {
            "user_a": "member",
            "user_b": "viewer",  # a role the map does not name reads only
            "user_c": "admin",
        }
        listed = await env.client.get(
            "/api/v1/workspaces", headers=bearer(clerk.token("user_a", org=Org(id="org_acme", role="member")))
        )
        assert [(item["kind"], item["role"], item["provider"]) for item in listed.json()["items"]] == [
            ("personal", "admin", None),
            ("organization", "member", "clerk"),
        ]
        # Without an organisation in the token: the personal workspace, whose id is the user's.
        me = (await env.me(clerk.token("user_a"))).json()
        assert me["workspace"] == {"id": me["id"], "kind": "personal", "name": "Personal", "role": "admin"}


async def test_a_removal_wins_over_tokens_issued_before_it_and_a_later_token_gets_in(
    provider_app: ProviderAppFactory,
) -> None:
    clerk = MockProvider.clerk()
    org = Org(id="org_removal", role="member")
    now = time.time()
    async with provider_app(clerk) as env:
        db = app_state(env.app).db
        early = clerk.token("user_r", org=org, iat=int(now) - 120)
        assert await workspace_of(env, early) is not None
        async with db.privileged() as conn:
            assert await store.apply_membership(conn, "clerk", "org_removal", "user_r", None, at(now - 60))

        async def refused() -> bool:
            return await workspace_of(env, early) is None

        await eventually(refused)
        # Another token issued before the removal cannot re-create the membership either.
        assert await workspace_of(env, clerk.token("user_r", org=org, iat=int(now) - 90)) is None
        # An older event than the removal changes nothing.
        async with db.privileged() as conn:
            assert not await store.apply_membership(
                conn, "clerk", "org_removal", "user_r", Role.MEMBER, at(now - 70)
            )
        assert await workspace_of(env, early) is None
        # A token issued after the removal (the user was added again) gets in, with its role.
        later = await workspace_of(env, clerk.token("user_r", org=org, iat=int(now)))
        assert later is not None and later["role"] == "member"


async def test_a_deleted_organisation_is_erased_and_its_tokens_find_nothing(
    provider_app: ProviderAppFactory,
) -> None:
    clerk = MockProvider.clerk()
    token = clerk.token("user_d", org=Org(id="org_gone", role="admin"))
    async with provider_app(clerk) as env:
        created = await env.client.post("/api/v1/sessions", json={"name": "plan"}, headers=bearer(token))
        assert created.status_code == 201, created.text
        state = app_state(env.app)
        async with state.db.privileged() as conn:
            workspace_id = await state.workspaces.delete_organization(conn, "clerk", "org_gone")
            assert workspace_id is not None
            await conn.execute("SELECT set_config('app.workspace_id', $1, true)", str(workspace_id))
            assert (
                await conn.fetchval("SELECT count(*) FROM sessions WHERE workspace_id = $1", workspace_id)
                == 0
            )

        async def refused() -> bool:
            return (await env.client.get("/api/v1/sessions", headers=bearer(token))).status_code == 404

        await eventually(refused)
        # A late token or event does not bring it back.
        assert await workspace_of(env, clerk.token("user_d", org=Org(id="org_gone", role="admin"))) is None
        async with state.db.privileged() as conn:
            assert not await store.apply_organization(conn, "clerk", "org_gone", "Back", None)


async def test_a_workos_token_acts_in_its_organisation_and_the_header_reaches_the_personal_one(
    provider_app: ProviderAppFactory,
) -> None:
    workos = MockProvider.workos()
    async with provider_app(workos) as env:
        token = workos.token("user_01W", org_id="org_01WORK", roles=["member"])
        workspace = await workspace_of(env, token)
        assert workspace is not None and (workspace["kind"], workspace["role"]) == ("organization", "member")
        created = await env.client.post("/api/v1/sessions", json={"name": "team plan"}, headers=bearer(token))
        assert created.status_code == 201, created.text
        # The same token, naming its personal workspace (its id is the user's): the team's rows are not there.
        me = (await env.me(token)).json()
        personal = {**bearer(token), "Routebook-Workspace": me["id"]}
        assert (await env.client.get("/api/v1/sessions", headers=personal)).json()["items"] == []
        assert (await env.me(token, **{"Routebook-Workspace": me["id"]})).json()["workspace"][
            "kind"
        ] == "personal"
        team = (await env.client.get("/api/v1/sessions", headers=bearer(token))).json()["items"]
        assert [item["name"] for item in team] == ["team plan"]
