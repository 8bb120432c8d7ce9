"""End to end through CurrentUser: provider-shaped tokens in, a users row and /users/me out."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from service.deps import app_state
from tests.kit import MockProvider, Org
from tests.kit.sql import SqlAdmin
from tests.users.conftest import ProviderAppFactory


async def user_rows(db: SqlAdmin, provider: str, subject: str) -> list[tuple[str | None]]:
    async with db.transaction() as session:
        result = await session.execute(
            text("SELECT email FROM users WHERE provider = :p AND subject = :s"),
            {"p": provider, "s": subject},
        )
        return [tuple(row) for row in result.all()]


async def test_clerk_v2_token_creates_the_user_and_shows_global_roles_and_the_org_apart(
    provider_app: ProviderAppFactory, clean_db: SqlAdmin
) -> None:
    clerk = MockProvider.clerk()
    async with provider_app(clerk) as env:
        token = clerk.token("user_2abc", org=Org(role="admin"), roles=["editor"], email="c@example.com")
        response = await env.me(token)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["provider"] == "clerk" and body["subject"] == "user_2abc"
    assert body["roles"] == ["editor"]  # the organisation's admin is no global admin
    assert body["org"] == {"id": "org_2abc", "role": "admin", "permissions": ["read", "manage"]}
    assert await user_rows(clean_db, "clerk", "user_2abc") == [("c@example.com",)]


async def test_clerk_v1_org_role_loses_its_prefix(provider_app: ProviderAppFactory) -> None:
    clerk = MockProvider.clerk()
    async with provider_app(clerk) as env:
        response = await env.me(clerk.token("user_v1", org=Org(role="admin"), version=1))
    assert response.status_code == 200
    assert response.json()["roles"] == []
    assert response.json()["org"] == {"id": "org_2abc", "role": "admin", "permissions": ["read", "manage"]}


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
async def test_supabase_token_is_accepted_with_app_metadata_roles(
    provider_app: ProviderAppFactory, clean_db: SqlAdmin, alg: str
) -> None:
    supabase = MockProvider.supabase(alg=alg)  # type: ignore[arg-type]
    subject = "6f1c0a4e-0000-4000-8000-00000000000a"
    async with provider_app(supabase) as env:
        response = await env.me(supabase.token(subject, roles=["admin"], email="s@example.com"))
    assert response.status_code == 200, response.text
    assert response.json()["roles"] == ["admin"]
    assert await user_rows(clean_db, "supabase", subject) == [("s@example.com",)]


async def test_workos_token_is_accepted_with_its_role_as_the_organisations(
    provider_app: ProviderAppFactory,
) -> None:
    workos = MockProvider.workos()
    async with provider_app(workos) as env:
        response = await env.me(workos.token("user_01W", roles=["admin", "member"]))
        configured = await env.me(workos.token("user_01V", claims={"global_roles": ["admin"]}))
    assert response.status_code == 200, response.text
    assert response.json()["roles"] == []  # WorkOS roles are membership roles unless configured
    assert response.json()["org"]["role"] == "admin"
    assert response.json()["email"] is None  # WorkOS sends none; webhooks fill it in
    assert configured.json()["roles"] == []  # not configured: an arbitrary claim grants nothing


async def test_workos_global_roles_come_only_from_configured_claims(provider_app: ProviderAppFactory) -> None:
    workos = MockProvider.workos()
    async with provider_app(workos, workos_roles_claims="global_roles") as env:
        response = await env.me(workos.token("user_01G", claims={"global_roles": ["admin"]}))
    assert response.status_code == 200, response.text
    assert response.json()["roles"] == ["admin"]


async def test_three_providers_at_once_are_routed_by_issuer(
    provider_app: ProviderAppFactory, clean_db: SqlAdmin
) -> None:
    clerk, supabase, workos = MockProvider.clerk(), MockProvider.supabase(), MockProvider.workos()
    async with provider_app(clerk, supabase, workos) as env:
        for provider, token in (
            ("clerk", clerk.token("same-subject")),
            ("supabase", supabase.token("same-subject")),
            ("workos", workos.token("same-subject")),
        ):
            response = await env.me(token)
            assert response.status_code == 200, response.text
            assert response.json()["provider"] == provider
        # One subject string, three providers: three distinct users.
        async with clean_db.transaction() as session:
            count = (await session.execute(text("SELECT count(DISTINCT id) FROM users"))).scalar_one()
        assert count == 3


async def test_concurrent_first_requests_create_exactly_one_user(
    provider_app: ProviderAppFactory, clean_db: SqlAdmin
) -> None:
    clerk = MockProvider.clerk()
    async with provider_app(clerk) as env:
        # Twenty distinct tokens of one subject, so the verified-claims cache cannot serialize them.
        tokens = [clerk.token("user_race", jti=f"t{i}") for i in range(20)]
        responses = await asyncio.gather(*(env.me(token) for token in tokens))
    assert [r.status_code for r in responses] == [200] * 20
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(await user_rows(clean_db, "clerk", "user_race")) == 1


async def test_a_tombstoned_user_gets_401(provider_app: ProviderAppFactory, clean_db: SqlAdmin) -> None:
    clerk = MockProvider.clerk()
    async with provider_app(clerk) as env:
        token = clerk.token("user_gone")
        assert (await env.me(token)).status_code == 200
        async with clean_db.transaction() as session:
            await session.execute(text("UPDATE users SET deleted_at = now() WHERE subject = 'user_gone'"))
            await session.execute(text("SELECT pg_notify('routebook_identity', 'user:clerk:user_gone')"))
        await app_state(env.app).listener.sync()
        response = await env.me(token)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_a_tombstoned_user_stays_refused_on_a_fresh_instance(
    provider_app: ProviderAppFactory, clean_db: SqlAdmin
) -> None:
    clerk = MockProvider.clerk()
    async with clean_db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO users (id, provider, subject, deleted_at) VALUES (gen_random_uuid(), 'clerk', 'x', now())"
            )
        )
    async with provider_app(clerk) as env:
        assert (await env.me(clerk.token("x"))).status_code == 401
    assert len(await user_rows(clean_db, "clerk", "x")) == 1  # not re-created beside the tombstone
