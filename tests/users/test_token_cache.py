"""A token served from the verified-token cache is still refused the moment anything else refuses it.

Each test first shows the token is cached (its second request does not decode it again), then
makes one change — a revoked session, a deleted user, a removed membership, a key gone from the
provider's key set — and the very next request with the same token is refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from service.auth.jwks import JWKSCache
from service.deps import app_state
from service.workspaces import store
from tests.kit import MockProvider, Org
from tests.users.conftest import ProviderApp, ProviderAppFactory


@asynccontextmanager
async def live(
    provider_app: ProviderAppFactory, provider: MockProvider, **settings: Any
) -> AsyncIterator[ProviderApp]:
    """An app whose identity and membership caches serve (its listener is up): the case where a
    stale cache could matter; a blind one reads the database on every request."""
    async with provider_app(provider, **settings) as env:
        state = app_state(env.app)
        async with asyncio.timeout(10):
            # Polling: `live` is a plain flag each cache owns, with no event to wait on.
            while not (state.identity.live and state.workspaces.live):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        yield env


async def cached(env: ProviderApp, token: str, decodes: list[str]) -> None:
    """The token is accepted, and its next request is served without decoding it again."""
    assert (await env.me(token)).status_code == 200
    before = len(decodes)
    assert (await env.me(token)).status_code == 200
    assert len(decodes) == before


def a_minute_ago() -> int:
    """An `iat` a minute back, so a membership change can be dated after it and before now."""
    return int(time.time()) - 60


def refused(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["detail"] == "The access token is missing, invalid or expired."


@pytest.mark.parametrize("kind", ["clerk", "workos"])
async def test_a_revoked_session_refuses_its_cached_token_on_the_next_request(
    provider_app: ProviderAppFactory, decodes: list[str], kind: str
) -> None:
    provider = MockProvider.clerk() if kind == "clerk" else MockProvider.workos()
    token = provider.token("user_revoked", sid="sess_revoked")
    other = provider.token("user_revoked", sid="sess_other")
    async with live(provider_app, provider) as env:
        await cached(env, token, decodes)
        await cached(env, other, decodes)
        state = app_state(env.app)
        async with state.db.privileged() as conn:
            # What the provider's session.revoked webhook applies (tests/webhooks sends it signed).
            await state.identity.revoke_session(conn, kind, "sess_revoked", "user_revoked")
        await state.listener.sync()

        refused(await env.me(token))
        assert (await env.me(other)).status_code == 200  # another session of the same user


async def test_a_deleted_user_is_refused_with_a_cached_token(
    provider_app: ProviderAppFactory, decodes: list[str]
) -> None:
    clerk = MockProvider.clerk()
    token = clerk.token("user_deleted")
    async with live(provider_app, clerk) as env:
        await cached(env, token, decodes)
        state = app_state(env.app)
        async with state.db.privileged() as conn:
            await state.identity.tombstone(conn, "clerk", "user_deleted")
        await state.listener.sync()

        refused(await env.me(token))


async def test_a_removed_membership_applies_at_once_to_a_cached_token(
    provider_app: ProviderAppFactory, decodes: list[str]
) -> None:
    clerk = MockProvider.clerk()
    issued = a_minute_ago()
    token = clerk.token("user_removed", org=Org(id="org_cache", role="member"), iat=issued)
    async with live(provider_app, clerk) as env:
        await cached(env, token, decodes)
        assert (await env.me(token)).json()["workspace"]["kind"] == "organization"
        state = app_state(env.app)
        async with state.db.privileged() as conn:
            # Removed after the token was issued: the token cannot bring the membership back.
            removed_at = datetime.fromtimestamp(issued + 30, UTC)
            assert await store.apply_membership(conn, "clerk", "org_cache", "user_removed", None, removed_at)
        await state.listener.sync()

        gone = await env.me(token)
        assert gone.status_code == 404, gone.text
        # The token itself is still good: without the organisation it reaches the personal workspace.
        personal = await env.me(clerk.token("user_removed"))
        assert personal.status_code == 200 and personal.json()["workspace"]["kind"] == "personal"


async def test_a_key_removed_from_the_key_set_refuses_its_cached_tokens_once_refreshed(
    provider_app: ProviderAppFactory, decodes: list[str]
) -> None:
    clerk = MockProvider.clerk()
    token = clerk.token("user_rotated")
    # No cooldown: the refused token's unknown kid is fetched for at once rather than waited on for
    # 5 s (the rotation grace has tests of its own in tests/auth/test_jwks.py).
    async with live(provider_app, clerk, jwks_refresh_cooldown=0) as env:
        await cached(env, token, decodes)
        clerk.rotate(keep_old=False)  # the provider drops the key that signed the token
        (profile,) = app_state(env.app).verifier.profiles
        assert isinstance(profile.keys, JWKSCache)
        assert await profile.keys.refresh()

        refused(await env.me(token))
        assert (await env.me(clerk.token("user_rotated"))).status_code == 200  # signed by the new key


async def test_a_different_token_sharing_a_prefix_does_not_hit_the_cache(
    provider_app: ProviderAppFactory, decodes: list[str]
) -> None:
    clerk = MockProvider.clerk()
    token = clerk.token("user_prefix")
    header_and_payload, _, signature = token.rpartition(".")
    # Same header and payload, another signature; the token with bytes added; the token cut short.
    forged = f"{header_and_payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    async with live(provider_app, clerk) as env:
        await cached(env, token, decodes)
        for other in (forged, token + "A", token[:-1]):
            refused(await env.me(other))
        assert (await env.me(token)).status_code == 200
