"""Provider-signed claims PostgreSQL or JSON cannot hold are the generic 401, never a 500, and write nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.kit import MockProvider
from tests.kit.sql import SqlAdmin
from tests.users.conftest import ProviderAppFactory

GENERIC = "The access token is missing, invalid or expired."
LONE_SURROGATE = "\ud800"


async def user_count(db: SqlAdmin) -> int:
    async with db.transaction() as session:
        return int((await session.execute(text("SELECT count(*) FROM users"))).scalar_one())


def email_of(length: int) -> str:
    domain = "@example.com"
    return "a" * (length - len(domain)) + domain


UNSTORABLE: dict[str, dict[str, Any]] = {
    "sub-nul": {"sub": "user_\x00x"},
    "sub-lone-surrogate": {"sub": f"user_{LONE_SURROGATE}"},
    "sub-256-chars": {"sub": "u" * 256},
    "email-nul": {"email": "a\x00@example.com"},
    "email-lone-surrogate": {"email": f"a{LONE_SURROGATE}@example.com"},
    "email-321-chars": {"email": email_of(321)},
}


@pytest.mark.parametrize("kind", ["clerk", "supabase"])
@pytest.mark.parametrize("claims", UNSTORABLE.values(), ids=UNSTORABLE.keys())
async def test_an_unstorable_subject_or_email_is_the_generic_401_and_writes_nothing(
    provider_app: ProviderAppFactory, clean_db: SqlAdmin, kind: str, claims: dict[str, Any]
) -> None:
    provider = MockProvider.clerk() if kind == "clerk" else MockProvider.supabase()
    async with provider_app(provider) as env:
        response = await env.me(provider.token(claims=claims))
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["detail"] == GENERIC
    assert await user_count(clean_db) == 0


async def test_the_longest_storable_subject_and_email_are_accepted(
    provider_app: ProviderAppFactory, clean_db: SqlAdmin
) -> None:
    clerk = MockProvider.clerk()
    subject, email = "u" * 255, email_of(320)
    async with provider_app(clerk) as env:
        response = await env.me(clerk.token(subject, email=email))
    assert response.status_code == 200, response.text
    assert (response.json()["subject"], response.json()["email"]) == (subject, email)
    assert await user_count(clean_db) == 1


UNREPRESENTABLE: dict[str, dict[str, Any]] = {
    "global-role": {"metadata": {"role": f"admin{LONE_SURROGATE}"}},
    "org-id": {"o": {"id": f"org_{LONE_SURROGATE}", "rol": "admin"}},
    "org-role": {"o": {"id": "org_1", "rol": f"admin{LONE_SURROGATE}"}},
    "org-permission": {"o": {"id": "org_1", "rol": "admin", "per": f"read,{LONE_SURROGATE}"}},
}


@pytest.mark.parametrize("claims", UNREPRESENTABLE.values(), ids=UNREPRESENTABLE.keys())
async def test_a_role_or_org_claim_that_is_not_unicode_text_is_the_generic_401(
    provider_app: ProviderAppFactory, clean_db: SqlAdmin, claims: dict[str, Any]
) -> None:
    # /users/me answers with these claims: a lone surrogate cannot be encoded as UTF-8 JSON.
    clerk = MockProvider.clerk()
    async with provider_app(clerk) as env:
        response = await env.me(clerk.token("user_s", claims=claims))
    assert response.status_code == 401, response.text
    assert response.json()["detail"] == GENERIC
    assert await user_count(clean_db) == 0
