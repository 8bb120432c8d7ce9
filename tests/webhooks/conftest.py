"""Webhook endpoint fixtures: signed deliveries built independently of the code under test, an app
with every receiver configured, and queries of what a delivery really wrote."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import orjson
import pytest
import respx
from fastapi import FastAPI
from sqlalchemy import text

from tests.conftest import AppFactory, client_for
from tests.kit import MockProvider, merge_overrides
from tests.kit.sql import SqlAdmin, scope_rls_to

CLERK_SECRET = "whsec_" + base64.b64encode(b"routebook-clerk-webhook-key-32b!").decode()
OLD_CLERK_SECRET = "whsec_" + base64.b64encode(b"routebook-old-clerk-webhook-key!").decode()
WORKOS_SECRET = "workos_webhook_secret_for_tests"
SUPABASE_BEARER = "supabase-database-webhook-shared-secret"
SUPABASE_WHSEC = "v1,whsec_" + base64.b64encode(b"routebook-supabase-hook-key-32b!").decode()

WEBHOOK_SETTINGS: dict[str, Any] = {
    # Two secrets: rotation in progress; deliveries are signed with the newer one.
    "clerk_webhook_secret": f"{OLD_CLERK_SECRET} {CLERK_SECRET}",
    "workos_webhook_secret": WORKOS_SECRET,
    "supabase_webhook_secret": SUPABASE_BEARER,
}

CLERK = "/api/v1/webhooks/clerk"
WORKOS = "/api/v1/webhooks/workos"
SUPABASE = "/api/v1/webhooks/supabase"

JSON = {"content-type": "application/json"}


# --- signing (independent of service.webhooks.signatures) ---------------------------------------


def sw_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("v1,").removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def workos_signature(secret: str, t_ms: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t_ms}.".encode() + body, hashlib.sha256).hexdigest()


def as_body(payload: Mapping[str, Any] | bytes) -> bytes:
    return payload if isinstance(payload, bytes) else orjson.dumps(payload)


def clerk_signed(
    payload: Mapping[str, Any] | bytes,
    *,
    msg_id: str | None = None,
    timestamp: int | None = None,
    secret: str = CLERK_SECRET,
) -> tuple[bytes, dict[str, str]]:
    body = as_body(payload)
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    headers = {
        **JSON,
        "svix-id": msg_id,
        "svix-timestamp": str(timestamp),
        "svix-signature": sw_signature(secret, msg_id, timestamp, body),
    }
    return body, headers


def workos_signed(
    payload: Mapping[str, Any] | bytes, *, t_ms: int | None = None, secret: str = WORKOS_SECRET
) -> tuple[bytes, dict[str, str]]:
    body = as_body(payload)
    t_ms = time.time_ns() // 1_000_000 if t_ms is None else t_ms
    return body, {**JSON, "workos-signature": f"t={t_ms}, v1={workos_signature(secret, t_ms, body)}"}


def supabase_signed(
    payload: Mapping[str, Any] | bytes, *, bearer: str = SUPABASE_BEARER
) -> tuple[bytes, dict[str, str]]:
    return as_body(payload), {**JSON, "authorization": f"Bearer {bearer}"}


# --- provider-shaped payloads ---------------------------------------------------------------------


def clerk_user_event(
    subject: str,
    *,
    kind: Literal["user.created", "user.updated"] = "user.updated",
    email: str | None = "user@example.com",
    first_name: str | None = "Ada",
    updated_ms: int = 1_700_000_000_000,
) -> dict[str, Any]:
    addresses = [] if email is None else [{"id": "idn_primary", "email_address": email}]
    return {
        "type": kind,
        "object": "event",
        "timestamp": updated_ms,
        "instance_id": "ins_test",
        "data": {
            "object": "user",
            "id": subject,
            "primary_email_address_id": "idn_primary" if email else None,
            "email_addresses": [{"id": "idn_other", "email_address": "old@example.com"}, *addresses],
            "first_name": first_name,
            "last_name": "Lovelace",
            "created_at": 1_600_000_000_000,
            "updated_at": updated_ms,
        },
    }


def clerk_deleted_event(subject: str, *, sent_ms: int = 1_700_000_000_000) -> dict[str, Any]:
    return {
        "type": "user.deleted",
        "object": "event",
        "timestamp": sent_ms,
        "data": {"object": "user", "id": subject, "deleted": True},
    }


def clerk_session_event(session_id: str, subject: str, kind: str = "session.revoked") -> dict[str, Any]:
    return {
        "type": kind,
        "object": "event",
        "timestamp": 1_700_000_000_000,
        "data": {"object": "session", "id": session_id, "user_id": subject, "status": "revoked"},
    }


def workos_user_event(
    subject: str,
    *,
    event_id: str | None = None,
    kind: str = "user.updated",
    email: str = "w@example.com",
    updated_at: str = "2024-05-01T00:00:00.000Z",
) -> dict[str, Any]:
    return {
        "object": "event",
        "id": event_id or f"event_{uuid.uuid4().hex}",
        "event": kind,
        "created_at": updated_at,
        "data": {
            "object": "user",
            "id": subject,
            "email": email,
            "first_name": "Grace",
            "last_name": "Hopper",
            "created_at": "2024-01-01T00:00:00.000Z",
            "updated_at": updated_at,
        },
    }


def supabase_event(
    kind: Literal["INSERT", "UPDATE", "DELETE"],
    subject: str,
    *,
    email: str = "s@example.com",
    updated_at: str = "2024-05-01 10:00:00.123456+00",
) -> dict[str, Any]:
    record = {
        "id": subject,
        "email": email,
        "encrypted_password": "$2a$10$never-stored",
        "raw_user_meta_data": {"full_name": "Supa Base"},
        "updated_at": updated_at,
        "deleted_at": None,
    }
    return {
        "type": kind,
        "table": "users",
        "schema": "auth",
        "record": None if kind == "DELETE" else record,
        "old_record": None if kind == "INSERT" else record,
    }


# --- what was written -----------------------------------------------------------------------------


@dataclass(frozen=True)
class UserRow:
    id: uuid.UUID
    email: str | None
    display_name: str | None
    deleted: bool
    provider_updated_at: Any


async def ledger_count(db: SqlAdmin) -> int:
    async with db.transaction() as session:
        return int((await session.execute(text("SELECT count(*) FROM webhook_events"))).scalar_one())


async def user_count(db: SqlAdmin) -> int:
    async with db.transaction() as session:
        return int((await session.execute(text("SELECT count(*) FROM users"))).scalar_one())


async def user_row(db: SqlAdmin, provider: str, subject: str) -> UserRow | None:
    async with db.transaction() as session:
        row = (
            await session.execute(
                text(
                    "SELECT id, email, display_name, deleted_at, provider_updated_at FROM users "
                    "WHERE provider = :provider AND subject = :subject"
                ),
                {"provider": provider, "subject": subject},
            )
        ).first()
    if row is None:
        return None
    return UserRow(row.id, row.email, row.display_name, row.deleted_at is not None, row.provider_updated_at)


async def insert_planning_rows(db: SqlAdmin, user_id: uuid.UUID) -> None:
    session_id, scenario_id = uuid.uuid4(), uuid.uuid4()
    async with db.transaction() as session:
        await scope_rls_to(session, user_id)  # FORCEd RLS binds a non-superuser owning login role
        await session.execute(
            text(
                "INSERT INTO sessions (id, workspace_id, user_id, name) VALUES (:id, :user_id, :user_id, 'trip')"
            ),
            {"id": session_id, "user_id": user_id},
        )
        await session.execute(
            text(
                "INSERT INTO scenarios (id, workspace_id, user_id, session_id, name, request, original_request) "
                "VALUES (:id, :user_id, :user_id, :session_id, 'plan', '{}'::jsonb, '{}'::jsonb)"
            ),
            {"id": scenario_id, "user_id": user_id, "session_id": session_id},
        )
        await session.execute(
            text(
                "INSERT INTO solutions (id, workspace_id, user_id, scenario_id, status, payload) "
                "VALUES (:id, :user_id, :user_id, :scenario_id, 'succeeded', '{\"km\": 12}'::jsonb)"
            ),
            {"id": uuid.uuid4(), "user_id": user_id, "scenario_id": scenario_id},
        )


async def planning_counts(db: SqlAdmin, user_id: uuid.UUID) -> tuple[int, int, int]:
    async with db.transaction() as session:
        await scope_rls_to(session, user_id)
        counts = [
            (
                await session.execute(
                    text(f"SELECT count(*) FROM {table} WHERE user_id = :id"), {"id": user_id}
                )
            ).scalar_one()
            for table in ("sessions", "scenarios", "solutions")
        ]
    return counts[0], counts[1], counts[2]


# --- apps -----------------------------------------------------------------------------------------


@pytest.fixture
async def hooks_app(app_factory: AppFactory) -> AsyncIterator[FastAPI]:
    async with app_factory(**WEBHOOK_SETTINGS) as app:
        yield app


@pytest.fixture
async def hooks(hooks_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(hooks_app) as client:
        yield client


@pytest.fixture
def clerk() -> MockProvider:
    return MockProvider.clerk()


@pytest.fixture
def jwks_router(clerk: MockProvider) -> Iterator[respx.MockRouter]:
    """Serves the mock Clerk JWKS; every other outgoing request fails instead of leaving the host."""
    with respx.mock(assert_all_called=False) as router:
        clerk.mock(router)
        yield router


ClerkAppFactory = Callable[[], AbstractAsyncContextManager[FastAPI]]


@pytest.fixture
def clerk_app(app_factory: AppFactory, clerk: MockProvider, jwks_router: respx.MockRouter) -> ClerkAppFactory:
    """`async with clerk_app() as app:` — Clerk tokens and every webhook receiver; call it twice for
    two instances sharing the database, each with its own caches and listener."""

    def build() -> AbstractAsyncContextManager[FastAPI]:
        return app_factory(**merge_overrides(clerk, **WEBHOOK_SETTINGS))

    return build


@asynccontextmanager
async def clients(*apps: FastAPI) -> AsyncIterator[list[httpx.AsyncClient]]:
    async with client_for(apps[0]) as first:
        if len(apps) == 1:
            yield [first]
            return
        async with clients(*apps[1:]) as rest:
            yield [first, *rest]
