"""The SPA paths: Clerk's __session cookie (with an Origin check on unsafe methods) and CORS."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from service.users.gate import CurrentUser
from tests.kit import MockProvider
from tests.users.conftest import ProviderAppFactory

SPA = "http://localhost:5173"


def add_unsafe_route(app: FastAPI) -> None:
    """A POST behind the gate (the planning routes are where this matters in the product)."""

    @app.post("/api/v1/_probe", status_code=204)
    async def probe(principal: CurrentUser) -> None:
        return None


async def test_session_cookie_is_accepted_on_get(provider_app: ProviderAppFactory) -> None:
    clerk = MockProvider.clerk()
    async with provider_app(clerk, cors_origins=[SPA]) as env:
        env.client.cookies.set("__session", clerk.token("user_cookie"))
        response = await env.client.get("/api/v1/users/me")
    assert response.status_code == 200
    assert response.json()["subject"] == "user_cookie"


async def test_cookie_is_ignored_when_clerk_is_not_configured(provider_app: ProviderAppFactory) -> None:
    clerk, workos = MockProvider.clerk(), MockProvider.workos()
    async with provider_app(workos) as env:
        env.client.cookies.set("__session", clerk.token("user_cookie"))
        response = await env.client.get("/api/v1/users/me")
    assert response.status_code == 401


@pytest.mark.parametrize("origin", [None, "https://evil.example", "http://localhost:5173.evil.example"])
async def test_unsafe_cookie_request_needs_an_allowed_origin(
    provider_app: ProviderAppFactory, origin: str | None
) -> None:
    clerk = MockProvider.clerk()
    async with provider_app(clerk, cors_origins=[SPA]) as env:
        add_unsafe_route(env.app)
        env.client.cookies.set("__session", clerk.token("user_cookie"))
        headers = {"Origin": origin} if origin else {}
        response = await env.client.post("/api/v1/_probe", headers=headers)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"


async def test_unsafe_cookie_request_from_the_spa_passes_the_gate(provider_app: ProviderAppFactory) -> None:
    clerk = MockProvider.clerk()
    async with provider_app(clerk, cors_origins=[SPA]) as env:
        add_unsafe_route(env.app)
        env.client.cookies.set("__session", clerk.token("user_cookie"))
        response = await env.client.post("/api/v1/_probe", headers={"Origin": SPA})
    assert response.status_code == 204


async def test_bearer_requests_need_no_origin(provider_app: ProviderAppFactory) -> None:
    clerk = MockProvider.clerk()
    async with provider_app(clerk, cors_origins=[SPA]) as env:
        add_unsafe_route(env.app)
        response = await env.client.post(
            "/api/v1/_probe", headers={"Authorization": f"Bearer {clerk.token('u')}"}
        )
    assert response.status_code == 204


async def test_preflight_from_a_listed_origin_succeeds(provider_app: ProviderAppFactory) -> None:
    async with provider_app(MockProvider.clerk(), cors_origins=[SPA]) as env:
        response = await env.client.options(
            "/api/v1/users/me",
            headers={
                "Origin": SPA,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization, routebook-workspace",
            },
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SPA
    assert response.headers["access-control-allow-credentials"] == "true"
    allowed = response.headers["access-control-allow-headers"].lower()
    # An SPA names the workspace it acts in with Routebook-Workspace.
    assert "authorization" in allowed and "routebook-workspace" in allowed
    assert int(response.headers["access-control-max-age"]) > 0


async def test_preflight_from_another_origin_is_refused(provider_app: ProviderAppFactory) -> None:
    async with provider_app(MockProvider.clerk(), cors_origins=[SPA]) as env:
        response = await env.client.options(
            "/api/v1/users/me",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_another_providers_token_in_the_clerk_cookie_is_refused(
    provider_app: ProviderAppFactory,
) -> None:
    clerk, workos = MockProvider.clerk(), MockProvider.workos()
    async with provider_app(clerk, workos) as env:
        env.client.cookies.set("__session", workos.token("user_w"))
        in_cookie = await env.client.get("/api/v1/users/me")
        env.client.cookies.clear()
        as_bearer = await env.me(workos.token("user_w"))
    assert in_cookie.status_code == 401
    assert as_bearer.status_code == 200


async def test_a_refused_preflight_is_logged_with_its_origin(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="routebook.cors"):
        refused = await client.options(
            "/api/v1/sessions",
            headers={"Origin": "http://127.0.0.1:5173", "Access-Control-Request-Method": "POST"},
        )
        allowed = await client.options(
            "/api/v1/sessions",
            headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"},
        )
    assert refused.status_code == 400 and allowed.status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "routebook.cors"]
    assert len(lines) == 1 and "http://127.0.0.1:5173" in lines[0] and "origin" in lines[0]
