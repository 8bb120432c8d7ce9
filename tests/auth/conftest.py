"""Auth unit fixtures: respx intercepts every outgoing request (nothing reaches a network)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from service.auth.tokens import TokenVerifier
from service.providers import build_verifier
from tests.kit import MockProvider, make_settings

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
