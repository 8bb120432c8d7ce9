"""JWKS cache behaviour, with every fetch counted by respx and time driven by a fake clock."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import respx

from service.auth.jwks import MAX_JWKS_BYTES, JWKSCache
from service.auth.keys import KeysUnavailable, StaticKeys
from service.auth.tokens import InvalidToken, TokenVerifier
from service.providers import build_verifier
from tests.auth.conftest import VerifierFactory, background_fetches_done, cache_for, verifier_over
from tests.kit import MockProvider, SigningKey, make_settings
from tests.kit.clock import FakeClock
from tests.kit.forge import reheader
from tests.kit.providers import HangingEndpoint

LOGGER = "routebook.auth.jwks"


def respond_with(status: int = 200, **kwargs: Any) -> Any:
    return lambda request: httpx.Response(status, **kwargs)


async def never_answers(request: httpx.Request) -> httpx.Response:
    return await HangingEndpoint()(request)


# Single flight and cooldown ------------------------------------------------------------


async def test_200_concurrent_verifications_on_a_cold_cache_make_one_fetch(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    clerk = MockProvider.clerk()
    verifier = make_verifier(clerk)
    (cache,) = [profile.keys for profile in verifier.profiles]
    # The fetch is held in flight until every caller has asked the cache for a key, so all 200
    # really are waiting on it at once (the last ones do not find the keys already stored).
    everyone_asked = asyncio.Event()
    asked = 0
    get_key = cache.get_key

    async def counted_get_key(kid: str | None, alg: str) -> Any:
        nonlocal asked
        asked += 1
        if asked == 200:
            everyone_asked.set()
        return await get_key(kid, alg)

    cache.get_key = counted_get_key  # type: ignore[method-assign]

    async def held_jwks(request: httpx.Request) -> httpx.Response:
        await everyone_asked.wait()
        return httpx.Response(200, json=clerk.jwks())

    route = router.get(clerk.jwks_url).mock(side_effect=held_jwks)
    tokens = [clerk.token(f"user_{i}") for i in range(200)]

    results = await asyncio.gather(*(verifier.verify(t) for t in tokens))

    assert route.call_count == 1
    assert [c.subject for c in results] == [f"user_{i}" for i in range(200)]


async def test_1000_unknown_kids_inside_the_cooldown_make_at_most_one_extra_fetch(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    clerk = MockProvider.clerk()
    route = clerk.mock(router)
    # A cooldown longer than MAX_ROTATION_WAIT refuses unknown kids at once; the default one (they
    # wait for its end) is test_rotation.py's.
    verifier = make_verifier(clerk, jwks_refresh_cooldown=30)
    valid = clerk.token("user_1")
    await verifier.verify(valid)
    forged = [reheader(valid, kid=uuid.uuid4().hex) for _ in range(1000)]

    outcomes = await asyncio.gather(*(verifier.verify(t) for t in forged), return_exceptions=True)

    assert all(isinstance(o, InvalidToken) for o in outcomes)
    assert route.call_count <= 2


async def test_unknown_kids_after_the_cooldown_share_one_refetch(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    clerk = MockProvider.clerk()
    route = clerk.mock(router)
    clock = FakeClock()
    cache = cache_for(clerk, http, clock, cooldown=30)
    await cache.prefetch()
    clock.advance(31)

    found = await asyncio.gather(*(cache.get_key(uuid.uuid4().hex, "RS256") for _ in range(1000)))

    assert found == [None] * 1000
    assert route.call_count == 2


async def test_rotation_is_accepted_after_exactly_one_fetch_once_the_cooldown_passed(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    clerk = MockProvider.clerk()
    route = clerk.mock(router)
    clock = FakeClock()
    cache = cache_for(clerk, http, clock, cooldown=30)
    verifier = verifier_over(clerk, cache, http)
    await verifier.verify(clerk.token("user_1"))
    assert route.call_count == 1

    clerk.rotate()
    rotated = clerk.token("user_1")
    clock.advance(10)
    with pytest.raises(InvalidToken):  # inside the cooldown: refused without a fetch
        await verifier.verify(rotated)
    assert route.call_count == 1

    clock.advance(21)
    assert (await verifier.verify(rotated)).subject == "user_1"
    assert (await verifier.verify(clerk.token("user_2"))).subject == "user_2"
    assert route.call_count == 2


async def test_a_known_kid_with_an_incompatible_alg_never_triggers_a_fetch(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    clerk = MockProvider.clerk()
    route = clerk.mock(router)
    clock = FakeClock()
    cache = cache_for(clerk, http, clock, cooldown=0)
    await cache.prefetch()

    assert await cache.get_key(clerk.key.kid, "ES256") is None
    assert route.call_count == 1


# Failures keep cached keys ---------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        respond_with(500, text="oops"),
        respond_with(200, text="<html>not json</html>"),
        respond_with(200, json={"keys": []}),
        respond_with(200, json=["not", "a", "jwks"]),
        never_answers,
        httpx.ConnectError("refused"),
    ],
    ids=["500", "garbage", "empty-set", "wrong-shape", "timeout", "connect-error"],
)
async def test_a_failing_endpoint_keeps_cached_keys_serving(
    failure: Any, router: respx.MockRouter, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    clerk = MockProvider.clerk()
    route = clerk.mock(router)
    clock = FakeClock()
    cache = cache_for(clerk, http, clock, max_age=600, timeout=0.3)
    verifier = verifier_over(clerk, cache, http)
    await verifier.verify(clerk.token("user_0"))

    attempts = 0

    async def counting(request: httpx.Request) -> httpx.Response:
        # respx does not count a call cancelled by our timeout; count attempts here.
        nonlocal attempts
        attempts += 1
        if isinstance(failure, Exception):
            raise failure
        result = failure(request)
        return await result if inspect.isawaitable(result) else result

    route.side_effect = counting
    clock.advance(601)  # refresh due: the next lookup refreshes in the background
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        first = await verifier.verify(clerk.token("user_1"))
        await background_fetches_done()
        later = [await verifier.verify(clerk.token(f"user_{i}")) for i in range(2, 30)]

    assert first.subject == "user_1"
    assert len(later) == 28
    assert attempts == 1
    failures = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(failures) == 1  # once per failed fetch, not once per request
    assert cache.ready


async def test_cached_keys_stop_serving_after_max_stale(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    clerk = MockProvider.clerk()
    route = clerk.mock(router)
    clock = FakeClock()
    cache = cache_for(clerk, http, clock, max_age=600, max_stale=3600)
    await cache.prefetch()
    route.side_effect = respond_with(503)

    clock.advance(3000)
    assert await cache.get_key(clerk.key.kid, "RS256") is not None
    clock.advance(700)
    with pytest.raises(KeysUnavailable):
        await cache.get_key(clerk.key.kid, "RS256")
    assert not cache.ready


@pytest.mark.parametrize(
    "failure", [HangingEndpoint, lambda: httpx.ConnectError("refused"), lambda: respond_with(502)]
)
async def test_no_cached_keys_and_endpoint_down_is_keys_unavailable_within_the_timeout(
    failure: Any, router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    clerk = MockProvider.clerk()
    endpoint = failure()
    router.get(clerk.jwks_url).mock(side_effect=endpoint)
    verifier = make_verifier(clerk, jwks_http_timeout=0.5)

    # A guard against a hang, not a measurement: only a request that waited on the dead endpoint
    # forever comes near it.
    async with asyncio.timeout(30):
        with pytest.raises(KeysUnavailable):
            await verifier.verify(clerk.token("user_1"))

    if isinstance(endpoint, HangingEndpoint):
        assert endpoint.calls == endpoint.abandoned == 1  # given up by JWKS_HTTP_TIMEOUT


async def test_concurrent_requests_against_a_dead_endpoint_share_one_fetch(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    clerk = MockProvider.clerk()
    hang = HangingEndpoint()  # respx does not count calls cancelled by our timeout
    router.get(clerk.jwks_url).mock(side_effect=hang)
    verifier = make_verifier(clerk, jwks_http_timeout=0.3)
    token = clerk.token("user_1")

    outcomes = await asyncio.gather(*(verifier.verify(token) for _ in range(50)), return_exceptions=True)

    assert all(isinstance(o, KeysUnavailable) for o in outcomes)
    assert hang.calls == hang.abandoned == 1


async def test_after_a_failed_cold_fetch_the_next_request_fails_fast_then_recovers(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    clerk = MockProvider.clerk()
    route = router.get(clerk.jwks_url).mock(side_effect=respond_with(500))
    clock = FakeClock()
    cache = cache_for(clerk, http, clock, cooldown=30)
    await cache.prefetch()  # never raises
    assert not cache.ready

    with pytest.raises(KeysUnavailable):
        await cache.get_key(clerk.key.kid, "RS256")
    assert route.call_count == 1  # inside the failure backoff: no new fetch per request

    route.side_effect = clerk._respond
    clock.advance(6)
    assert await cache.get_key(clerk.key.kid, "RS256") is not None
    assert route.call_count == 2


async def test_verifier_start_survives_a_dead_provider_and_ready_nudges_a_retry(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    clerk = MockProvider.clerk()
    route = router.get(clerk.jwks_url).mock(side_effect=respond_with(500))
    verifier = make_verifier(clerk, jwks_refresh_cooldown=0)
    await verifier.start()
    assert not verifier.ready

    route.side_effect = clerk._respond
    assert not verifier.ready  # this poll starts a background fetch
    (profile,) = verifier.profiles
    assert isinstance(profile.keys, JWKSCache)
    await background_fetches_done()

    assert verifier.ready
    await verifier.aclose()


# Refresh schedule ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cache_control", "no_fetch_at", "fetch_at"),
    [
        ("public, max-age=120", 119, 121),  # shorter than JWKS_CACHE_MAX_AGE: honoured
        ("max-age=5", 59, 61),  # clamped: never more often than once a minute
        ("max-age=86400, must-revalidate", 599, 601),  # longer: JWKS_CACHE_MAX_AGE wins
        ("no-cache", 599, 601),
    ],
)
async def test_cache_control_max_age_sets_the_refresh_time(
    cache_control: str, no_fetch_at: float, fetch_at: float, router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    clerk = MockProvider.clerk()
    clerk.jwks_headers = {"Cache-Control": cache_control}
    route = clerk.mock(router)
    clock = FakeClock(0)
    cache = cache_for(clerk, http, clock, max_age=600)
    await cache.prefetch()

    clock.now = no_fetch_at
    await cache.get_key(clerk.key.kid, "RS256")
    await background_fetches_done()
    assert route.call_count == 1

    clock.now = fetch_at
    assert await cache.get_key(clerk.key.kid, "RS256") is not None  # served while refreshing
    await background_fetches_done()
    assert route.call_count == 2


async def test_a_cache_hit_past_max_age_refreshes_the_keys_and_a_removed_key_stops_the_token(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    clerk = MockProvider.clerk()
    route = clerk.mock(router)
    clock = FakeClock()
    cache = cache_for(clerk, http, clock, max_age=600)
    verifier = verifier_over(clerk, cache, http)
    token = clerk.token("user_1", expires_in=3600)
    await verifier.verify(token)
    clerk.rotate(keep_old=False)  # the provider removes the token's key

    clock.advance(599)
    await verifier.verify(token)
    await background_fetches_done()
    assert route.call_count == 1  # not due yet: the hit costs nothing

    clock.advance(2)
    for _ in range(20):  # hits, served from the cache while one refresh runs
        assert (await verifier.verify(token)).subject == "user_1"
    await background_fetches_done()
    assert route.call_count == 2

    with pytest.raises(InvalidToken):
        await verifier.verify(token)
    assert route.call_count == 2  # refused from the fresh key set, no further fetch


async def test_generation_changes_with_the_key_set_only(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    clerk = MockProvider.clerk()
    clerk.mock(router)
    cache = cache_for(clerk, http)
    await cache.prefetch()
    first = cache.generation

    await cache.refresh()
    assert cache.generation == first
    clerk.rotate(keep_old=True)
    await cache.refresh()
    assert cache.generation == first + 1


# What a fetch accepts --------------------------------------------------------------------


async def test_redirects_are_not_followed(router: respx.MockRouter, http: httpx.AsyncClient) -> None:
    clerk = MockProvider.clerk()
    elsewhere = router.get("https://elsewhere.test/jwks.json").mock(side_effect=clerk._respond)
    router.get(clerk.jwks_url).mock(
        return_value=httpx.Response(302, headers={"Location": "https://elsewhere.test/jwks.json"})
    )
    cache = cache_for(clerk, http)

    with pytest.raises(KeysUnavailable):
        await cache.get_key(clerk.key.kid, "RS256")
    assert elsewhere.call_count == 0


async def test_an_oversize_body_is_refused(router: respx.MockRouter, http: httpx.AsyncClient) -> None:
    clerk = MockProvider.clerk()
    body = json.dumps({**clerk.jwks(), "padding": "x" * (MAX_JWKS_BYTES + 1)})
    router.get(clerk.jwks_url).mock(return_value=httpx.Response(200, text=body))
    cache = cache_for(clerk, http)

    with pytest.raises(KeysUnavailable):
        await cache.get_key(clerk.key.kid, "RS256")


async def test_an_endless_body_is_cut_off() -> None:
    clerk = MockProvider.clerk()
    produced = 0

    async def endless() -> AsyncIterator[bytes]:
        # "Endless" for the client's purposes: no Content-Length, 8x the limit in total
        # (finite, so a missing size check fails this test instead of hanging it).
        nonlocal produced
        yield b'{"keys": [], "x": "'
        while produced < 8 * MAX_JWKS_BYTES:
            produced += 65536
            yield b"x" * 65536

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=endless()))
    async with httpx.AsyncClient(transport=transport) as http:
        cache = cache_for(clerk, http, timeout=30)
        with pytest.raises(KeysUnavailable):
            await cache.get_key(clerk.key.kid, "RS256")

    assert produced <= MAX_JWKS_BYTES + 2 * 65536


async def test_small_rsa_keys_are_refused(router: respx.MockRouter, http: httpx.AsyncClient) -> None:
    clerk = MockProvider.clerk()
    weak = SigningKey.generate("RS256", bits=1024)
    clerk.keys = [weak]
    clerk.mock(router)

    with pytest.raises(KeysUnavailable):  # the only key is unusable: nothing is held
        await cache_for(clerk, http).get_key(weak.kid, "RS256")

    clerk.keys = [weak, SigningKey.generate("RS256")]
    cache = cache_for(clerk, http)
    assert await cache.get_key(weak.kid, "RS256") is None
    assert await cache.get_key(clerk.key.kid, "RS256") is not None


async def test_malformed_and_unusable_keys_are_skipped_beside_good_ones(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    clerk = MockProvider.clerk()
    good = clerk.key.public_jwk()
    members: list[Any] = [
        {"kty": "RSA", "kid": "bad-n", "n": "!!!", "e": "AQAB"},
        {"kty": "EC", "kid": "bad-crv", "crv": "P-999", "x": "AA", "y": "AA"},
        {"kid": "no-kty"},
        "not-an-object",
        {"kty": "oct", "kid": "symmetric", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"},
        {**SigningKey.generate("RS256").public_jwk(), "kid": "enc-key", "use": "enc"},
        {**SigningKey.generate("RS256").public_jwk(), "kid": "hs-alg", "alg": "HS256"},
        good,
    ]
    router.get(clerk.jwks_url).mock(return_value=httpx.Response(200, json={"keys": members}))
    cache = cache_for(clerk, http)

    assert await cache.get_key(clerk.key.kid, "RS256") is not None
    for kid in ("bad-n", "bad-crv", "symmetric", "enc-key", "hs-alg"):
        assert await cache.get_key(kid, "RS256") is None
        assert await cache.get_key(kid, "HS256") is None


async def test_jwk_members_must_agree_with_the_token_alg(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    rsa_declared = SigningKey.generate("RS256", kid="rsa-declared")
    rsa_bare = SigningKey.generate("RS256", kid="rsa-bare")
    p256 = SigningKey.generate("ES256", kid="p256")
    p384 = SigningKey.generate("ES384", kid="p384")
    bare = {k: v for k, v in rsa_bare.public_jwk().items() if k != "alg"}
    keys = [rsa_declared.public_jwk(), bare, p256.public_jwk(), p384.public_jwk()]
    clerk = MockProvider.clerk()
    router.get(clerk.jwks_url).mock(return_value=httpx.Response(200, json={"keys": keys}))
    cache = cache_for(clerk, http)

    assert await cache.get_key("rsa-declared", "RS256") is not None
    assert await cache.get_key("rsa-declared", "PS256") is None  # JWK says RS256
    assert await cache.get_key("rsa-declared", "ES256") is None
    bound = await cache.get_key("rsa-bare", "PS256")  # no alg on the JWK: any RSA alg
    assert bound is not None and bound.algorithm_name == "PS256"
    assert await cache.get_key("rsa-bare", "ES256") is None
    assert await cache.get_key("p256", "ES256") is not None
    assert await cache.get_key("p256", "ES384") is None
    assert await cache.get_key("p384", "ES256") is None
    assert await cache.get_key("p256", "RS256") is None


async def test_ps256_token_against_an_rs256_jwk_fails_even_where_ps256_is_pinned(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    # Pinning alone would already refuse PS256 for every real profile; this isolates the
    # JWK-binding check with a profile that allows both algorithms.
    clerk = MockProvider.clerk()
    clerk.mock(router)
    cache = cache_for(clerk, http)
    (profile,) = build_verifier(make_settings(clerk), http).profiles
    lax = dataclasses.replace(profile, keys=cache, algorithms=frozenset({"RS256", "PS256", "ES256"}))
    verifier = TokenVerifier([lax], leeway=5)

    assert (await verifier.verify(clerk.token("user_1"))).subject == "user_1"
    with pytest.raises(InvalidToken):
        await verifier.verify(clerk.token("user_1", alg="PS256"))
    attacker = SigningKey.generate("ES256")
    with pytest.raises(InvalidToken):
        await verifier.verify(clerk.token("user_1", key=attacker, headers={"kid": clerk.key.kid}))


async def test_token_without_kid_uses_the_only_compatible_key(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    supabase = MockProvider.supabase(alg="ES256")
    supabase.rotate(keep_old=True)
    supabase.mock(router)
    cache = cache_for(supabase, http)

    assert await cache.get_key(None, "ES256") is None  # two candidates: no guessing
    supabase.keys = supabase.keys[-1:]
    await cache.refresh()
    assert await cache.get_key(None, "ES256") is not None


# Networkless Clerk -----------------------------------------------------------------------


async def test_clerk_jwt_key_pem_verifies_without_any_request(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    clerk = MockProvider.clerk()  # deliberately not mocked: any request would fail loudly
    verifier = make_verifier(clerk, clerk_jwt_key=clerk.public_pem())
    assert verifier.ready

    await verifier.start()
    claims = await verifier.verify(clerk.token("user_1", headers={"kid": "ins_2xyz"}))

    assert claims.subject == "user_1"
    assert len(router.calls) == 0


async def test_clerk_jwt_key_refuses_a_token_signed_by_another_key(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    clerk = MockProvider.clerk()
    verifier = make_verifier(clerk, clerk_jwt_key=clerk.public_pem())
    clerk.rotate()

    with pytest.raises(InvalidToken):
        await verifier.verify(clerk.token("user_1"))
    assert len(router.calls) == 0


def test_static_keys_refuse_weak_and_symmetric_keys() -> None:
    with pytest.raises(ValueError):
        StaticKeys.from_pem(SigningKey.generate("RS256", bits=1024).public_pem())
    with pytest.raises(ValueError):
        StaticKeys([{"kty": "oct", "k": "c2VjcmV0"}])


async def test_static_pem_with_literal_newlines_is_accepted() -> None:
    key = SigningKey.generate("RS256")
    keys = StaticKeys.from_pem(key.public_pem().replace("\n", "\\n"))
    found = await keys.get_key("any-kid", "RS256")
    assert isinstance(found, jwt.PyJWK)


async def test_supabase_on_the_legacy_secret_is_ready_with_an_empty_jwks(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    secret = "super-secret-jwt-token-with-at-least-32-characters-long"
    supabase = MockProvider.supabase(jwt_secret=secret)
    router.get(supabase.jwks_url).mock(return_value=httpx.Response(200, json={"keys": []}))
    verifier = make_verifier(supabase)
    await verifier.start()

    assert verifier.ready
    assert (await verifier.verify(supabase.token("u-1", alg="HS256"))).subject == "u-1"
    without_secret = make_verifier(supabase, supabase_jwt_secret=None)
    assert not without_secret.ready
    await without_secret.aclose()  # the poll above started a fetch; do not leave it running
