"""The verified-claims cache: hits skip jwt.decode; expiry, key changes and failures are honoured."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any

import httpx
import jwt
import pytest
import respx

from service.auth.jwks import JWKSCache
from service.auth.keys import KeysUnavailable
from service.auth.tokens import InvalidToken, TokenVerifier
from service.providers import build_verifier
from tests.auth.conftest import background_fetches_done, cache_for, verifier_over
from tests.kit import MockProvider, make_settings
from tests.kit.clock import FakeClock


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


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
    clerk: MockProvider, build: Build, decodes: list[str]
) -> None:
    verifier = build()
    token = clerk.token("user_1")

    first = await verifier.verify(token)
    second = await verifier.verify(token)

    assert second == first
    assert len(decodes) == 1


async def test_an_entry_is_not_served_once_the_token_expired(
    clerk: MockProvider, build: Build, decodes: list[str]
) -> None:
    clock = Clock()
    verifier = build(clock=clock)
    token = clerk.token("user_1", expires_in=60)
    claims = await verifier.verify(token)

    clock.now = claims.expires_at - 1
    await verifier.verify(token)
    assert len(decodes) == 1

    clock.now = claims.expires_at  # exactly exp: no leeway for cached entries
    await verifier.verify(token)  # PyJWT (real clock) still accepts it: a fresh decode
    assert len(decodes) == 2


async def test_a_token_expired_within_the_leeway_is_accepted_but_not_cached(
    clerk: MockProvider, build: Build, decodes: list[str]
) -> None:
    verifier = build()
    now = int(time.time())
    token = clerk.token("user_1", iat=now - 60, nbf=now - 60, exp=now - 2)

    await verifier.verify(token)
    await verifier.verify(token)

    assert len(decodes) == 2


async def test_a_key_set_change_evicts_entries(clerk: MockProvider, build: Build, decodes: list[str]) -> None:
    verifier = build()
    token = clerk.token("user_1")
    await verifier.verify(token)
    (profile,) = verifier.profiles
    assert isinstance(profile.keys, JWKSCache)

    clerk.rotate(keep_old=True)
    await profile.keys.refresh()
    await verifier.verify(token)

    assert len(decodes) == 2


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


async def test_a_failed_token_is_never_cached(clerk: MockProvider, build: Build, decodes: list[str]) -> None:
    verifier = build()
    token = clerk.token("user_1", sts="pending")  # passes jwt.decode, refused afterwards

    for _ in range(2):
        with pytest.raises(InvalidToken):
            await verifier.verify(token)

    assert len(decodes) == 2


async def test_the_cache_is_bounded(clerk: MockProvider, build: Build, decodes: list[str]) -> None:
    verifier = build(cache_size=3)
    tokens = [clerk.token(f"user_{i}") for i in range(5)]
    for token in tokens:
        await verifier.verify(token)

    await verifier.verify(tokens[-1])
    assert len(decodes) == 5  # the newest is still cached
    await verifier.verify(tokens[0])
    assert len(decodes) == 6  # the oldest was evicted


async def test_cached_claims_are_read_only(clerk: MockProvider, build: Build) -> None:
    verifier = build()
    token = clerk.token("user_1")
    claims = await verifier.verify(token)

    with pytest.raises(TypeError):
        claims.claims["sub"] = "someone-else"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        claims.subject = "someone-else"  # type: ignore[misc]
    assert (await verifier.verify(token)).subject == "user_1"


@pytest.fixture
def jwt_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """A clock that PyJWT's own time checks read too, so a cache hit and a fresh decode agree on now."""
    clock = Clock()

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Frozen:
            moment = datetime.fromtimestamp(clock.now, tz)
            return cls.combine(moment.date(), moment.timetz())

    monkeypatch.setattr(jwt.api_jwt, "datetime", Frozen)
    return clock


async def test_a_cached_token_past_its_exp_is_refused(
    clerk: MockProvider, build: Build, jwt_clock: Clock, decodes: list[str]
) -> None:
    verifier = build(clock=jwt_clock)  # leeway 5 s
    token = clerk.token("user_1", expires_in=60)
    claims = await verifier.verify(token)
    await verifier.verify(token)
    assert len(decodes) == 1  # cached

    jwt_clock.now = claims.expires_at + 5  # past exp and the leeway
    with pytest.raises(InvalidToken):
        await verifier.verify(token)
    with pytest.raises(InvalidToken):
        await verifier.verify(token)


async def test_a_cached_token_is_not_served_before_its_nbf_when_the_clock_goes_back(
    clerk: MockProvider, build: Build, jwt_clock: Clock
) -> None:
    verifier = build(clock=jwt_clock)  # leeway 5 s
    now = int(jwt_clock.now)
    token = clerk.token("user_1", iat=now, nbf=now, exp=now + 60)
    await verifier.verify(token)

    jwt_clock.now = now - 6  # the wall clock stepped back past nbf less the leeway
    with pytest.raises(InvalidToken):
        await verifier.verify(token)
    jwt_clock.now = now - 5  # within the leeway: accepted, as a fresh decode accepts it
    assert (await verifier.verify(token)).subject == "user_1"


async def test_refused_tokens_never_push_a_valid_one_out(
    clerk: MockProvider, build: Build, decodes: list[str]
) -> None:
    verifier = build(cache_size=2)
    good = [clerk.token("user_1"), clerk.token("user_2")]
    for token in good:
        await verifier.verify(token)
    for n in range(50):
        signed_but_refused = clerk.token(f"user_x{n}", sts="pending")
        forged = clerk.token(f"user_y{n}").rpartition(".")[0] + "." + good[0].rpartition(".")[2]
        expired = clerk.token(f"user_z{n}", iat=int(time.time()) - 120, exp=int(time.time()) - 60)
        for token in (signed_but_refused, forged, expired):
            with pytest.raises(InvalidToken):
                await verifier.verify(token)
    decoded = len(decodes)

    for token in good:
        await verifier.verify(token)
    assert len(decodes) == decoded  # both still served from the cache


async def test_the_cache_holds_digests_not_tokens(clerk: MockProvider, build: Build) -> None:
    verifier = build()
    token = clerk.token("user_1")
    await verifier.verify(token)

    (key,) = verifier._cache
    assert len(key) == 32 and token.encode() != key and key not in token.encode()


async def test_a_cached_token_is_not_served_from_keys_past_max_stale(
    router: respx.MockRouter, http: httpx.AsyncClient, clerk: MockProvider
) -> None:
    clock = FakeClock()
    cache = cache_for(clerk, http, clock, max_age=600, max_stale=3600)
    verifier = verifier_over(clerk, cache, http)
    token = clerk.token("user_1", expires_in=7200)
    await verifier.verify(token)
    router.get(clerk.jwks_url).mock(return_value=httpx.Response(503))  # the provider's endpoint fails

    clock.advance(3000)
    assert (await verifier.verify(token)).subject == "user_1"  # stale keys still serve
    await background_fetches_done()
    clock.advance(700)  # past JWKS_MAX_STALE: a miss would be 503, and so is the cached token
    with pytest.raises(KeysUnavailable):
        await verifier.verify(token)
