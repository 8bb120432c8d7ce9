"""Global roles open /admin; an organisation role never does (anyone can create an org and run it)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from service.deps import app_state
from tests.kit import MockProvider, Org, make_settings
from tests.users.conftest import ProviderAppFactory

ADMIN_USERS = "/api/v1/admin/users"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def admin_and_me(client: httpx.AsyncClient, token: str) -> tuple[int, dict[str, Any]]:
    """(status of the admin listing, the /users/me body) for one token."""
    admin = await client.get(ADMIN_USERS, headers=bearer(token))
    if admin.status_code == 403:
        assert admin.headers["content-type"] == "application/problem+json"
    me = await client.get("/api/v1/users/me", headers=bearer(token))
    assert me.status_code == 200, me.text
    return admin.status_code, me.json()


@pytest.mark.parametrize(
    ("kind", "claims"),
    [
        pytest.param("clerk", {"org": Org(role="admin"), "version": 2}, id="clerk-v2-o.rol-admin"),
        pytest.param("clerk", {"org": Org(role="admin"), "version": 1}, id="clerk-v1-org_role-org:admin"),
        pytest.param("workos", {"roles": ["admin"]}, id="workos-org-role-admin"),
    ],
)
async def test_an_organisation_admin_is_refused_the_admin_listing(
    provider_app: ProviderAppFactory, kind: str, claims: dict[str, Any]
) -> None:
    provider = MockProvider.clerk() if kind == "clerk" else MockProvider.workos()
    token = provider.token("user_orgadmin", **claims)
    async with provider_app(provider) as env:
        status, me = await admin_and_me(env.client, token)
    assert status == 403
    assert me["roles"] == []
    assert me["org"]["role"] == "admin"


async def test_the_raw_org_claims_read_as_the_organisation_not_as_roles(
    provider_app: ProviderAppFactory,
) -> None:
    # Written out, not through the kit's Org helper: exactly what Clerk and WorkOS send.
    clerk, workos = MockProvider.clerk(), MockProvider.workos()
    tokens = {
        "v2": clerk.token("user_v2", o={"id": "org_1", "slg": "acme", "rol": "admin", "per": "manage"}),
        "v1": clerk.token("user_v1", org_id="org_1", org_role="org:admin", org_permissions=["org:manage"]),
        "workos": workos.token(
            "user_w", org_id="org_1", role="admin", roles=["admin"], permissions=["manage"]
        ),
    }
    async with provider_app(clerk, workos) as env:
        outcomes = {name: await admin_and_me(env.client, token) for name, token in tokens.items()}
    for name, (status, me) in outcomes.items():
        assert status == 403, name
        assert me["roles"] == [], name
        assert me["org"] == {"id": "org_1", "role": "admin", "permissions": ["manage"]}, name


async def test_an_org_admin_with_a_plain_global_role_is_still_refused(
    provider_app: ProviderAppFactory,
) -> None:
    clerk = MockProvider.clerk()
    async with provider_app(clerk) as env:
        status, me = await admin_and_me(
            env.client, clerk.token("user_m", org=Org(role="admin"), roles=["member"])
        )
    assert status == 403
    assert me["roles"] == ["member"]


async def test_clerk_public_metadata_role_opens_the_admin_listing(provider_app: ProviderAppFactory) -> None:
    clerk = MockProvider.clerk()
    async with provider_app(clerk) as env:
        status, me = await admin_and_me(env.client, clerk.token("user_root", metadata={"role": "admin"}))
    assert status == 200
    assert me["roles"] == ["admin"]
    assert me["org"] is None  # no organisation in the token: null, not an empty object


async def test_dev_roles_open_the_admin_listing(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = app_state(app).dev_issuer.mint(subject="dev-root", email="root@example.com", roles=["admin"])
    member = app_state(app).dev_issuer.mint(subject="dev-member", email="m@example.com", roles=["member"])

    status, me = await admin_and_me(client, admin)
    refused, _ = await admin_and_me(client, member)

    assert status == 200
    assert me["roles"] == ["admin"] and me["org"] is None
    assert refused == 403


async def test_users_me_shows_global_roles_and_the_org_side_by_side(provider_app: ProviderAppFactory) -> None:
    clerk = MockProvider.clerk()
    token = clerk.token(
        "user_both", org=Org(id="org_9", role="billing", permissions=("pay",)), roles=["admin"]
    )
    async with provider_app(clerk) as env:
        status, me = await admin_and_me(env.client, token)
    assert status == 200  # the global role, whatever the organisation says
    assert me["roles"] == ["admin"]
    assert me["org"] == {"id": "org_9", "role": "billing", "permissions": ["pay"]}


@pytest.mark.parametrize("paths", ["o.rol", "metadata.role,org_role", "o", "org_permissions"])
def test_clerk_roles_claims_naming_an_organisation_claim_is_refused_at_startup(paths: str) -> None:
    with pytest.raises(ValidationError, match="CLERK_ROLES_CLAIMS"):
        make_settings(MockProvider.clerk(), clerk_roles_claims=paths)


@pytest.mark.parametrize("paths", ["user_metadata.role", "app_metadata.role,user_metadata"])
def test_supabase_roles_claims_naming_user_metadata_is_refused_at_startup(paths: str) -> None:
    with pytest.raises(ValidationError, match="SUPABASE_ROLES_CLAIMS"):
        make_settings(MockProvider.supabase(), supabase_roles_claims=paths)


async def test_clerk_roles_claims_may_name_another_public_metadata_claim(
    provider_app: ProviderAppFactory,
) -> None:
    clerk = MockProvider.clerk()
    async with provider_app(clerk, clerk_roles_claims="metadata.routebook_roles") as env:
        token = clerk.token("user_r", metadata={"routebook_roles": ["admin"]}, org=Org(role="admin"))
        status, me = await admin_and_me(env.client, token)
    assert status == 200
    assert me["roles"] == ["admin"]
