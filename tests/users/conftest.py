"""An app configured for mock providers whose JWKS respx serves (and counts)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI

from tests.conftest import AppFactory, client_for
from tests.kit import MockProvider, merge_overrides, mock_all


@dataclass
class ProviderApp:
    app: FastAPI
    client: httpx.AsyncClient
    routes: list[respx.Route]
    router: respx.MockRouter

    async def me(self, token: str, **headers: str) -> httpx.Response:
        return await self.client.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {token}", **headers}
        )


ProviderAppFactory = Callable[..., AbstractAsyncContextManager[ProviderApp]]


@pytest.fixture
def provider_app(app_factory: AppFactory) -> ProviderAppFactory:
    @asynccontextmanager
    async def build(*providers: MockProvider, **extra: Any) -> AsyncIterator[ProviderApp]:
        with respx.mock(assert_all_called=False) as router:
            routes = mock_all(router, providers)
            async with app_factory(**merge_overrides(*providers, **extra)) as app:
                async with client_for(app) as client:
                    yield ProviderApp(app, client, routes, router)

    return build
