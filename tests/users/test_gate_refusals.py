"""Every refusal of the gate: one generic 401 body, the right challenge, 403 for missing roles."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.kit import REMOVE, MockProvider, SigningKey
from tests.kit.forge import assemble, reheader, split
from tests.kit.providers import HangingEndpoint
from tests.users.conftest import ProviderApp, ProviderAppFactory

GENERIC = "The access token is missing, invalid or expired."


def forged_tokens(clerk: MockProvider) -> dict[str, str]:
    good = clerk.token("user_x")
    header, payload, _ = split(good)
    stranger = SigningKey.generate("RS256", kid=clerk.key.kid)
    return {
        "alg none": assemble({**header, "alg": "none"}, payload),
        "empty signature": good.rsplit(".", 1)[0] + ".",
        "other key, same kid": clerk.token("user_x", key=stranger),
        "expired": clerk.token("user_x", exp=int(time.time()) - 3600),
        "missing sub": clerk.token("user_x", sub=REMOVE),
        "issuer suffix": clerk.token("user_x", iss=clerk.issuer + ".evil.test"),
        "jku header": reheader(good, jku="https://evil.test/jwks.json"),
        "garbage": "not-a-token",
        "jwe five parts": "a.b.c.d.e",
        "huge": "a" * 20_000,
    }


async def refusals(env: ProviderApp, tokens: dict[str, str]) -> dict[str, httpx.Response]:
    return {name: await env.me(token) for name, token in tokens.items()}


async def test_every_bad_token_gets_the_same_generic_401(provider_app: ProviderAppFactory) -> None:
    clerk = MockProvider.clerk()
    async with provider_app(clerk) as env:
        env.router.get("https://evil.test/jwks.json").respond(200, json={"keys": []})
        responses = await refusals(env, forged_tokens(clerk))
        assert env.router.routes[-1].call_count == 0  # a jku header is never followed
    bodies = set()
    for name, response in responses.items():
        assert response.status_code == 401, name
        assert response.headers["content-type"] == "application/problem+json", name
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"', name
        body = response.json()
        assert body["detail"] == GENERIC, name
        bodies.add(response.content)
    assert len(bodies) == 1  # nothing in the body tells one cause from another


async def test_no_token_is_401_with_a_bare_challenge(provider_app: ProviderAppFactory) -> None:
    async with provider_app(MockProvider.clerk()) as env:
        response = await env.client.get("/api/v1/users/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["detail"] == GENERIC


@pytest.mark.parametrize("authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Token abc"])
async def test_malformed_authorization_header_is_invalid_token(
    provider_app: ProviderAppFactory, authorization: str
) -> None:
    async with provider_app(MockProvider.clerk()) as env:
        response = await env.client.get("/api/v1/users/me", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_admin_route_needs_the_admin_role(provider_app: ProviderAppFactory) -> None:
    clerk = MockProvider.clerk()
    async with provider_app(clerk) as env:
        anonymous = await env.client.get("/api/v1/admin/users")
        member = await env.client.get(
            "/api/v1/admin/users",
            headers={"Authorization": f"Bearer {clerk.token('user_m', roles=['member'])}"},
        )
        admin = await env.client.get(
            "/api/v1/admin/users",
            headers={"Authorization": f"Bearer {clerk.token('user_a', roles=['admin'])}"},
        )
    assert anonymous.status_code == 401
    assert member.status_code == 403
    assert member.headers["content-type"] == "application/problem+json"
    assert admin.status_code == 200


async def test_keys_unavailable_is_503_within_the_timeout(provider_app: ProviderAppFactory) -> None:
    clerk = MockProvider.clerk()
    endpoint = HangingEndpoint()
    async with provider_app(clerk, jwks_http_timeout=0.5) as env:
        env.routes[0].side_effect = endpoint
        # A guard against a hang, not a measurement: the request must give up by its own timeout.
        async with asyncio.timeout(30):
            response = await env.me(clerk.token("user_x"))
            ready = await env.client.get("/ready")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"]
    assert ready.status_code == 503
    assert endpoint.calls >= 1 and endpoint.abandoned == endpoint.calls  # each fetch was given up


async def test_ready_once_keys_arrive(provider_app: ProviderAppFactory) -> None:
    clerk = MockProvider.clerk()
    async with provider_app(clerk) as env:
        assert (await env.me(clerk.token("user_x"))).status_code == 200
        assert (await env.client.get("/ready")).status_code == 200
