"""Planning fixtures: signed-in callers (dev-issuer tokens, the same verification path as any
provider) and rows arranged directly through the login role where the HTTP path is not the point."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from service.core.db import new_id
from service.deps import app_state
from tests.conftest import client_for
from tests.kit.sql import SqlAdmin, scope_rls_to

API = "/api/v1"


@dataclass(frozen=True)
class Caller:
    """One signed-in user: their id, and a client that sends their token."""

    name: str
    user_id: uuid.UUID
    http: httpx.AsyncClient
    headers: dict[str, str]

    async def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        if body is not None:
            kwargs["content"] = body if isinstance(body, bytes) else encode(body)
            headers.setdefault("content-type", "application/json")
        return await self.http.request(method, f"{API}{path}", headers=headers, **kwargs)


def encode(value: Any) -> bytes:
    """JSON bytes; the standard library where orjson refuses (integers past 64 bits, deep nesting)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False).encode()


async def sign_in(app: FastAPI, http: httpx.AsyncClient, name: str) -> Caller:
    token = app_state(app).dev_issuer.mint(subject=f"user-{name}", email=f"{name}@example.com")
    headers = {"Authorization": f"Bearer {token}"}
    me = await http.get(f"{API}/users/me", headers=headers)
    assert me.status_code == 200, me.text
    return Caller(name=name, user_id=uuid.UUID(me.json()["id"]), http=http, headers=headers)


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as client:
        yield client


@pytest.fixture
async def alice(app: FastAPI, http: httpx.AsyncClient) -> Caller:
    return await sign_in(app, http, "alice")


@pytest.fixture
async def bob(app: FastAPI, http: httpx.AsyncClient) -> Caller:
    return await sign_in(app, http, "bob")


# The login role may own the tables without being a superuser; FORCEd RLS binds it too, so every
# helper below names the user whose rows it arranges or reads.


async def insert_scenarios(
    db: SqlAdmin, user_id: uuid.UUID, session_id: uuid.UUID, count: int, request: Any = None
) -> list[uuid.UUID]:
    """Many scenarios in one statement, as the login role: fast arrangement for listing tests."""
    ids = [new_id() for _ in range(count)]
    document = orjson.dumps(request if request is not None else {"stops": []}).decode()
    async with db.transaction() as session:
        await scope_rls_to(session, user_id)
        await session.execute(
            text(
                "INSERT INTO scenarios (id, workspace_id, user_id, session_id, name, original_request) "
                "SELECT id, :user_id, :user_id, :session_id, 'bulk ' || ord, CAST(:doc AS jsonb) "
                "FROM unnest(CAST(:ids AS uuid[])) WITH ORDINALITY AS t(id, ord)"
            ),
            {"ids": ids, "user_id": user_id, "session_id": session_id, "doc": document},
        )
    return ids


async def owners(db: SqlAdmin, users: list[uuid.UUID]) -> dict[str, dict[uuid.UUID, uuid.UUID]]:
    """table -> {id: user_id} for every row of `users`: the ground truth, read by the login role."""
    truth: dict[str, dict[uuid.UUID, uuid.UUID]] = {}
    async with db.transaction() as session:
        for table in ("sessions", "scenarios", "solutions"):
            truth[table] = {}
            for user_id in users:
                await scope_rls_to(session, user_id)
                query = text(f"SELECT id, user_id FROM {table} WHERE user_id = :u")
                rows = (await session.execute(query, {"u": user_id})).all()
                truth[table].update({row.id: row.user_id for row in rows})
    return truth


async def row_snapshot(db: SqlAdmin, user_id: uuid.UUID) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a user owns, as the login role sees it: to prove a request changed nothing."""
    snapshot: dict[str, list[tuple[Any, ...]]] = {}
    queries = {
        "sessions": "SELECT id, name, updated_at FROM sessions WHERE user_id = :u ORDER BY id",
        "scenarios": "SELECT id, name, version, updated_at, request::text, original_request::text "
        "FROM scenarios WHERE user_id = :u ORDER BY id",
        "solutions": "SELECT id, status, version, updated_at, payload::text FROM solutions WHERE user_id = :u ORDER BY id",
    }
    async with db.transaction() as session:
        await scope_rls_to(session, user_id)
        for table, query in queries.items():
            snapshot[table] = [
                tuple(row) for row in (await session.execute(text(query), {"u": user_id})).all()
            ]
    return snapshot
