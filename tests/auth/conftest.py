"""Auth unit fixtures: respx intercepts every outgoing request (nothing reaches a network)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import respx

from service.auth.tokens import TokenVerifier
from tests.kit import MockProvider, make_settings

VerifierFactory = Callable[..., TokenVerifier]


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    # assert_all_mocked: a request to any URL without a route fails instead of going out.
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock_router:
        yield mock_router


@pytest.fixture
async def http(router: respx.MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def make_verifier(http: httpx.AsyncClient) -> VerifierFactory:
    """TokenVerifier for the given mock providers; keyword arguments override Settings."""

    def build(*providers: MockProvider, **extra: Any) -> TokenVerifier:
        return TokenVerifier.from_settings(make_settings(*providers, **extra), http)

    return build


async def background_fetches_done() -> None:
    """Wait for JWKS fetches started in the background (JWKSCache names its tasks `jwks-<name>`)."""
    fetches = [task for task in asyncio.all_tasks() if task.get_name().startswith("jwks-")]
    await asyncio.gather(*fetches, return_exceptions=True)
