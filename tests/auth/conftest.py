"""Auth unit fixtures: respx intercepts every outgoing request (nothing reaches a network)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from service.auth.jwks import JWKSCache
from service.auth.tokens import TokenVerifier
from service.providers import build_verifier
from tests.kit import MockProvider, make_settings
from tests.kit.clock import FakeClock

VerifierFactory = Callable[..., TokenVerifier]


@pytest.fixture
def make_verifier(http: httpx.AsyncClient) -> VerifierFactory:
    """TokenVerifier for the given mock providers; keyword arguments override Settings."""

    def build(*providers: MockProvider, **extra: Any) -> TokenVerifier:
        return build_verifier(make_settings(*providers, **extra), http)

    return build


async def background_fetches_done() -> None:
    """Wait for JWKS fetches started in the background (JWKSCache names its tasks `jwks-<name>`)."""
    fetches = [task for task in asyncio.all_tasks() if task.get_name().startswith("jwks-")]
    await asyncio.gather(*fetches, return_exceptions=True)


def cache_for(
    provider: MockProvider,
    http: httpx.AsyncClient,
    clock: FakeClock | None = None,
    *,
    max_age: float = 600,
    cooldown: float = 30,
    max_stale: float = 86400,
    timeout: float = 5,
) -> JWKSCache:
    clock = clock or FakeClock()
    return JWKSCache(
        provider.kind,
        provider.jwks_url,
        http=http,
        max_age=max_age,
        cooldown=cooldown,
        max_stale=max_stale,
        timeout=timeout,
        clock=clock,
        sleep=clock.sleep,
    )


def verifier_over(provider: MockProvider, cache: JWKSCache, http: httpx.AsyncClient) -> TokenVerifier:
    """The provider's real profile, with its keys served by `cache` (fake clock and all)."""
    (profile,) = build_verifier(make_settings(provider), http).profiles
    return TokenVerifier([dataclasses.replace(profile, keys=cache)], leeway=5)
