"""The verified-claims cache: hits skip jwt.decode; expiry, key changes and failures are honoured."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
import respx

from service.auth.jwks import JWKSCache
from service.auth.tokens import InvalidToken, TokenVerifier
from service.providers import build_verifier
from tests.kit import MockProvider, make_settings


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts jwt.decode calls (the expensive, signature-checking step)."""
    calls: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return calls


@pytest.fixture
def clerk(router: respx.MockRouter) -> MockProvider:
    provider = MockProvider.clerk()
    provider.mock(router)
    return provider


Build = Callable[..., TokenVerifier]


@pytest.fixture
def build(http: httpx.AsyncClient, clerk: MockProvider) -> Build:
    def make(*, clock: Clock | None = None, cache_size: int = 10_000, **settings: Any) -> TokenVerifier:
        profiles = build_verifier(make_settings(clerk, **settings), http).profiles
        return TokenVerifier(profiles, leeway=5, cache_size=cache_size, clock=clock or time.time)

    return make


async def test_a_second_verify_does_not_decode_again(
    clerk: MockProvider, build: Build, decode_calls: list[str]
) -> None:
    verifier = build()
    token = clerk.token("user_1")

    first = await verifier.verify(token)
    second = await verifier.verify(token)

    assert second == first
    assert len(decode_calls) == 1


async def test_an_entry_is_not_served_once_the_token_expired(
    clerk: MockProvider, build: Build, decode_calls: list[str]
) -> None:
    clock = Clock()
    verifier = build(clock=clock)
    token = clerk.token("user_1", expires_in=60)
    claims = await verifier.verify(token)

    clock.now = claims.expires_at - 1
    await verifier.verify(token)
    assert len(decode_calls) == 1

    clock.now = claims.expires_at  # exactly exp: no leeway for cached entries
    await verifier.verify(token)  # PyJWT (real clock) still accepts it: a fresh decode
    assert len(decode_calls) == 2


async def test_a_token_expired_within_the_leeway_is_accepted_but_not_cached(
    clerk: MockProvider, build: Build, decode_calls: list[str]
) -> None:
    verifier = build()
    now = int(time.time())
    token = clerk.token("user_1", iat=now - 60, nbf=now - 60, exp=now - 2)

    await verifier.verify(token)
    await verifier.verify(token)

    assert len(decode_calls) == 2


async def test_a_key_set_change_evicts_entries(
    clerk: MockProvider, build: Build, decode_calls: list[str]
) -> None:
    verifier = build()
    token = clerk.token("user_1")
    await verifier.verify(token)
    (profile,) = verifier.profiles
    assert isinstance(profile.keys, JWKSCache)

    clerk.rotate(keep_old=True)
    await profile.keys.refresh()
    await verifier.verify(token)

    assert len(decode_calls) == 2


async def test_a_refreshed_key_set_without_the_key_stops_cached_tokens_at_once(
    clerk: MockProvider, build: Build
) -> None:
    # The refresh is forced here; test_jwks shows a cache hit past max age starting it. No cooldown:
    # the unknown kid's refetch happens at once instead of after JWKS_REFRESH_COOLDOWN.
    verifier = build(jwks_refresh_cooldown=0)
    token = clerk.token("user_1")
    await verifier.verify(token)
    (profile,) = verifier.profiles
    assert isinstance(profile.keys, JWKSCache)

    clerk.rotate(keep_old=False)
    await profile.keys.refresh()

    with pytest.raises(InvalidToken):
        await verifier.verify(token)


async def test_a_failed_token_is_never_cached(
    clerk: MockProvider, build: Build, decode_calls: list[str]
) -> None:
    verifier = build()
    token = clerk.token("user_1", sts="pending")  # passes jwt.decode, refused afterwards

    for _ in range(2):
        with pytest.raises(InvalidToken):
            await verifier.verify(token)

    assert len(decode_calls) == 2


async def test_the_cache_is_bounded(clerk: MockProvider, build: Build, decode_calls: list[str]) -> None:
    verifier = build(cache_size=3)
    tokens = [clerk.token(f"user_{i}") for i in range(5)]
    for token in tokens:
        await verifier.verify(token)

    await verifier.verify(tokens[-1])
    assert len(decode_calls) == 5  # the newest is still cached
    await verifier.verify(tokens[0])
    assert len(decode_calls) == 6  # the oldest was evicted


async def test_cached_claims_are_read_only(clerk: MockProvider, build: Build) -> None:
    verifier = build()
    token = clerk.token("user_1")
    claims = await verifier.verify(token)

    with pytest.raises(TypeError):
        claims.claims["sub"] = "someone-else"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        claims.subject = "someone-else"  # type: ignore[misc]
    assert (await verifier.verify(token)).subject == "user_1"
