"""The in-memory revocation set: filled by announcements, swept once its tokens have expired."""

from __future__ import annotations

import time

import pytest

from service.core.db import Database
from service.users import identity as identity_module
from service.users.identity import MAX_SESSION_TOKEN_LIFETIME, IdentityService
from tests.kit import REMOVE, MockProvider
from tests.kit.forge import split
from tests.users.conftest import ProviderAppFactory


async def test_expired_revocations_are_swept(monkeypatch: pytest.MonkeyPatch, service_db: Database) -> None:
    clock = [1_000_000.0]
    monkeypatch.setattr(identity_module.time, "time", lambda: clock[0])
    directory = IdentityService(service_db)
    directory.live = True
    for n in range(1500):
        directory.announced(f"session:clerk:sess_old_{n}")
    assert await directory.is_revoked("clerk", "sess_old_1")
    clock[0] += MAX_SESSION_TOKEN_LIFETIME.total_seconds() + 1
    for n in range(1100):
        directory.announced(f"session:clerk:sess_new_{n}")
    assert not await directory.is_revoked("clerk", "sess_old_1")  # every token of it has expired
    assert await directory.is_revoked("clerk", "sess_new_1")
    assert len(directory._revoked) < 1500 + 1100


async def test_a_session_token_outliving_revocation_retention_is_refused(
    provider_app: ProviderAppFactory,
) -> None:
    clerk = MockProvider.clerk()
    lifetime = int(MAX_SESSION_TOKEN_LIFETIME.total_seconds())
    async with provider_app(clerk) as env:
        too_long = await env.me(clerk.token("user_l", expires_in=lifetime + 3600))
        ordinary = await env.me(clerk.token("user_l", expires_in=60))
        # Without a session id there is nothing to revoke, so no cap applies.
        sessionless = await env.me(clerk.token("user_l", expires_in=lifetime + 3600, sid=REMOVE))
    assert too_long.status_code == 401
    assert ordinary.status_code == 200
    assert sessionless.status_code == 200


async def test_a_long_lived_session_token_of_a_provider_without_revocations_is_accepted(
    provider_app: ProviderAppFactory,
) -> None:
    # No revocation can ever arrive for Supabase sessions, so no retention can be outlived: a project
    # configured for week-long access tokens must keep working.
    supabase = MockProvider.supabase()
    week = 7 * 24 * 3600
    async with provider_app(supabase) as env:
        token = supabase.token(expires_in=week)
        response = await env.me(token)
    _, payload, _ = split(token)
    assert payload["session_id"]  # it does name a session
    assert payload["exp"] - payload["iat"] == week
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("kind", ["clerk", "workos"])
async def test_a_session_token_issued_more_than_a_day_ago_is_refused(
    provider_app: ProviderAppFactory, kind: str
) -> None:
    # WorkOS sends session revocations as Clerk does, so its tokens get the same cap: one issued over
    # 24 h ago (and still unexpired) would outlive the revocation that should refuse it.
    provider = MockProvider.clerk() if kind == "clerk" else MockProvider.workos()
    now = int(time.time())
    issued = now - int(MAX_SESSION_TOKEN_LIFETIME.total_seconds()) - 3600
    async with provider_app(provider) as env:
        old = await env.me(provider.token("user_old", iat=issued, exp=now + 60))
        fresh = await env.me(provider.token("user_old", expires_in=3600))
    assert old.status_code == 401
    assert old.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert fresh.status_code == 200, fresh.text


async def test_a_clerk_session_token_living_a_week_is_refused(provider_app: ProviderAppFactory) -> None:
    clerk = MockProvider.clerk()
    async with provider_app(clerk) as env:
        response = await env.me(clerk.token("user_week", expires_in=7 * 24 * 3600))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
