"""A key rotation under forged-kid traffic: honoured within the cooldown, fetches still bounded.

Time is the cache's injected clock and sleep (tests.kit.clock), so "within 5 s" is simulated
seconds, never a wall-clock measurement; every fetch is counted by respx.
"""

from __future__ import annotations

import asyncio
import math
import uuid

import httpx
import pytest
import respx

from service.auth.jwks import MAX_ROTATION_WAIT, MAX_ROTATION_WAITERS
from service.auth.tokens import InvalidToken, TokenVerifier
from tests.auth.conftest import cache_for, verifier_over
from tests.kit import MockProvider, make_settings
from tests.kit.clock import FakeClock
from tests.kit.forge import reheader
from tests.kit.waiting import eventually

ROTATION_BOUND = 5.0


async def settled(condition: bool) -> bool:
    return condition


def forged(valid: str, count: int) -> list[str]:
    """`count` copies of a genuine token under random kids: nothing tells them from a rotation."""
    return [reheader(valid, kid=uuid.uuid4().hex) for _ in range(count)]


async def outcome(verifier: TokenVerifier, clock: FakeClock, token: str) -> tuple[bool, float]:
    """(verified, fake time when the answer came)."""
    try:
        await verifier.verify(token)
    except InvalidToken:
        return False, clock()
    return True, clock()


def test_the_default_cooldown_is_within_the_rotation_bound() -> None:
    settings = make_settings(MockProvider.clerk())
    assert settings.jwks_refresh_cooldown <= ROTATION_BOUND
    assert MAX_ROTATION_WAIT <= ROTATION_BOUND


async def test_a_rotation_during_a_forged_kid_flood_verifies_within_the_bound_with_bounded_fetches(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    clerk = MockProvider.clerk()
    route = clerk.mock(router)
    clock = FakeClock(0.0)
    cooldown = make_settings(clerk).jwks_refresh_cooldown
    cache = cache_for(clerk, http, clock, cooldown=cooldown)
    verifier = verifier_over(clerk, cache, http)
    valid = clerk.token("user_0", expires_in=3600)
    assert (await verifier.verify(valid)).subject == "user_0"

    rotated_at: float | None = None
    first_in_line: list[tuple[bool, float]] = []  # a genuine user among the waiters
    last_in_line: list[tuple[bool, float]] = []  # one arriving after the flood took every slot
    while clock.now < 60.0:
        if rotated_at is None and clock.now >= 12.3:
            clerk.rotate()
            rotated_at = clock.now
        batch = forged(valid, 300)
        if rotated_at is not None:
            batch = [clerk.token("user_a"), *batch, clerk.token("user_b")]
        results = await asyncio.gather(*(outcome(verifier, clock, token) for token in batch))
        if rotated_at is None:
            assert not any(ok for ok, _ in results)
        else:
            assert not any(ok for ok, _ in results[1:-1])  # forgeries never pass
            first_in_line.append(results[0])
            last_in_line.append(results[-1])
        clock.advance(0.5)

    assert rotated_at is not None
    # Bounded: the first fetch (at 0), then at most one per cooldown however many forged kids came.
    assert 2 < route.call_count <= 1 + math.floor(clock.now / cooldown)
    # The genuine user among the waiters verifies on the first try, within the bound.
    ok, answered_at = first_in_line[0]
    assert ok and answered_at - rotated_at <= ROTATION_BOUND
    assert all(ok for ok, _ in first_in_line)
    # Refused only while the flood held every waiting slot, and never past the bound.
    assert all(ok for ok, at in last_in_line if at - rotated_at >= ROTATION_BOUND)
    assert last_in_line[-1][0]


async def test_an_unknown_kid_joins_the_fetch_in_flight_instead_of_being_refused(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    clerk = MockProvider.clerk()
    calls = 0
    in_flight, release = asyncio.Event(), asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls > 1:  # the first is the prefetch, answered at once
            in_flight.set()
            await release.wait()
        return httpx.Response(200, json=clerk.jwks())

    route = router.get(clerk.jwks_url).mock(side_effect=slow)
    clock = FakeClock()
    cache = cache_for(clerk, http, clock, cooldown=30)
    verifier = verifier_over(clerk, cache, http)
    valid = clerk.token("user_0")
    await verifier.verify(valid)
    clock.advance(31)

    forgery = asyncio.create_task(verifier.verify(forged(valid, 1)[0]))
    await asyncio.wait_for(in_flight.wait(), timeout=10)  # its refetch is now in flight
    clerk.rotate()  # the provider answers the fetch in flight with the new key
    genuine = asyncio.create_task(verifier.verify(clerk.token("user_1")))
    # One turn of the loop: the task runs up to its first suspension, the join of the fetch (it has
    # nothing else to wait on), so the fetch is released only once it has joined.
    await asyncio.sleep(0)
    assert not genuine.done()
    release.set()

    assert (await genuine).subject == "user_1"
    with pytest.raises(InvalidToken):
        await forgery
    assert route.call_count == 2
    assert clock.sleeps == []  # joined, never waited for the cooldown


async def test_waiting_for_the_cooldown_is_bounded_in_number(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    clerk = MockProvider.clerk()
    route = clerk.mock(router)
    clock = FakeClock()
    cache = cache_for(clerk, http, clock, cooldown=5)
    verifier = verifier_over(clerk, cache, http)
    valid = clerk.token("user_0")
    await verifier.verify(valid)
    clock.hold = asyncio.Event()

    tasks = [asyncio.create_task(verifier.verify(t)) for t in forged(valid, 1000)]
    refused_at_once = 1000 - MAX_ROTATION_WAITERS
    await eventually(lambda: settled(sum(t.done() for t in tasks) >= refused_at_once))
    assert sum(t.done() for t in tasks) == refused_at_once  # the rest hold one slot each
    assert len(clock.sleeps) == 1  # one shared wait, not one per request

    clock.hold.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, InvalidToken) for o in outcomes)
    assert route.call_count == 2


async def test_a_cooldown_longer_than_the_wait_bound_refuses_without_waiting(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    clerk = MockProvider.clerk()
    route = clerk.mock(router)
    clock = FakeClock()
    cache = cache_for(clerk, http, clock, cooldown=MAX_ROTATION_WAIT + 25)
    await cache.prefetch()
    clock.advance(10)

    assert await cache.get_key(uuid.uuid4().hex, "RS256") is None
    assert clock.sleeps == []
    assert route.call_count == 1

    clock.advance(20 + 1)  # a real rotation would now verify at once: the cooldown is over
    clerk.rotate()
    assert await cache.get_key(clerk.key.kid, "RS256") is not None
    assert route.call_count == 2


async def test_a_waiter_that_goes_away_does_not_cancel_the_others_fetch(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    clerk = MockProvider.clerk()
    route = clerk.mock(router)
    clock = FakeClock()
    cache = cache_for(clerk, http, clock, cooldown=5)
    await cache.prefetch()
    clock.hold = asyncio.Event()
    clerk.rotate()

    leaving = asyncio.create_task(cache.get_key(clerk.key.kid, "RS256"))
    staying = asyncio.create_task(cache.get_key(clerk.key.kid, "RS256"))
    await eventually(lambda: settled(len(clock.sleeps) == 1))
    leaving.cancel()
    clock.hold.set()

    assert await staying is not None
    assert leaving.cancelled()
    assert route.call_count == 2


async def test_aclose_cancels_a_fetch_scheduled_for_the_end_of_the_cooldown(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    clerk = MockProvider.clerk()
    route = clerk.mock(router)
    clock = FakeClock()
    cache = cache_for(clerk, http, clock, cooldown=5)
    await cache.prefetch()
    clock.hold = asyncio.Event()

    waiter = asyncio.create_task(cache.get_key(uuid.uuid4().hex, "RS256"))
    await eventually(lambda: settled(len(clock.sleeps) == 1))
    await cache.aclose()

    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("jwks-")]
    assert route.call_count == 1
