"""The dev issuer end to end, and the admin listing's keyset pagination."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import text

from service.config import Settings
from service.deps import app_state
from tests.conftest import AppFactory, client_for
from tests.kit.sql import SqlAdmin

ROOT = Path(__file__).resolve().parents[2]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_dev_token_route_mints_a_token_that_works(client: httpx.AsyncClient) -> None:
    minted = await client.post("/dev/token", json={"email": "dev@example.com", "roles": ["admin"]})
    assert minted.status_code == 200
    body = minted.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    me = await client.get("/api/v1/users/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["email"] == "dev@example.com"
    assert me.json()["roles"] == ["admin"]


@pytest.mark.parametrize(
    ("inside", "status"),
    [
        ("\x85", 422),  # NEL: whitespace to Rust's regex, not to ECMA-262's \s — once refused here only
        ("\ufeff", 422),  # BOM: whitespace to ECMA-262's \s, not to Rust's — once accepted here only
        ("\xa0", 422),
        ("\x1c", 422),  # whitespace to Python's str.strip (names are stripped): spelled out in both
        ("\xe9", 200),
    ],
)
async def test_dev_token_email_whitespace_is_what_the_document_says(
    client: httpx.AsyncClient, inside: str, status: int
) -> None:
    """The OpenAPI pattern (read by clients as ECMA-262) and the server agree on every character."""
    document = (await client.get("/openapi.json")).json()
    pattern = document["components"]["schemas"]["DevTokenCreate"]["properties"]["email"]["pattern"]
    assert "\\s" not in pattern  # its set differs between the two dialects
    assert (await client.post("/dev/token", json={"email": f"a{inside}b@example.com"})).status_code == status


async def test_dev_jwks_serves_the_public_key_only(client: httpx.AsyncClient) -> None:
    keys = (await client.get("/dev/.well-known/jwks.json")).json()["keys"]
    assert len(keys) == 1 and keys[0]["kty"] == "RSA" and keys[0]["alg"] == "RS256"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(keys[0])


async def test_dev_routes_absent_without_the_dev_provider(app_factory: AppFactory) -> None:
    async with app_factory(auth_providers=["workos"], workos_client_id="client_X") as app:
        async with client_for(app) as client:
            assert (await client.post("/dev/token", json={"email": "a@b.c"})).status_code == 404


def test_dev_issuer_is_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="dev issuer"):
        Settings(  # type: ignore[call-arg]
            _env_file=None, environment="production", database_url="postgresql://x/y", auth_providers="dev"
        )


async def test_dev_key_file_is_private(app: FastAPI, settings: Settings) -> None:
    mode = stat.S_IMODE(os.stat(settings.dev_key_path).st_mode)
    assert mode == 0o600


async def test_dev_token_script_prints_a_working_token(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    env = {**os.environ, "ENVIRONMENT": "test", "DATA_DIR": str(settings.data_dir), "AUTH_PROVIDERS": "dev"}
    env.pop("DATABASE_URL", None)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "scripts.dev_token", "--email", "script@example.com", "--role", "admin"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = result.stdout.strip()
    me = await client.get("/api/v1/users/me", headers=bearer(token))
    assert me.status_code == 200, me.text
    assert me.json()["email"] == "script@example.com"
    assert me.json()["roles"] == ["admin"]


async def test_admin_users_pages_newest_first_without_gaps(
    app: FastAPI, client: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    async with clean_db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO users (id, provider, subject, created_at) "
                "SELECT gen_random_uuid(), 'dev', 'bulk-' || n, now() - n * interval '1 second' "
                "FROM generate_series(1, 25) AS n"
            )
        )
    admin = app_state(app).dev_issuer.mint(subject="root", email="root@example.com", roles=["admin"])
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "10", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/admin/users", params=params, headers=bearer(admin))).json()
        seen += [item["subject"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    bulk = [s for s in seen if s.startswith("bulk-")]
    assert bulk == [f"bulk-{n}" for n in range(1, 26)]  # newest first, each once
    assert len(seen) == len(set(seen)) == 26  # plus the admin, created on first sight
    tampered = await client.get(
        "/api/v1/admin/users", params={"cursor": "AAAA" + (cursor or "x")}, headers=bearer(admin)
    )
    assert tampered.status_code == 422


async def test_dev_tokens_are_minted_only_for_loopback_clients(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as remote:
        response = await remote.post("/dev/token", json={"email": "x@example.com", "roles": ["admin"]})
    assert response.status_code == 403
    assert "access_token" not in response.text
