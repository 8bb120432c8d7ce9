"""WorkOS `session.revoked`: the session's tokens are refused from the next request on, everywhere."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import respx

from tests.conftest import AppFactory
from tests.kit import MockProvider, merge_overrides
from tests.kit.sql import SqlAdmin
from tests.webhooks.conftest import WEBHOOK_SETTINGS, WORKOS, clients, ledger_count, workos_signed
from tests.webhooks.test_handlers import me, post, sync, until_live


@pytest.fixture
def workos() -> MockProvider:
    return MockProvider.workos()


@pytest.fixture
def workos_jwks(workos: MockProvider) -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        workos.mock(router)
        yield router


def session_revoked(session_id: str, subject: str, *, event_id: str | None = None) -> dict[str, Any]:
    # WorkOS's event envelope around a Session object: `id` is what access tokens carry as `sid`.
    return {
        "object": "event",
        "id": event_id or f"event_{uuid.uuid4().hex}",
        "event": "session.revoked",
        "created_at": "2026-01-05T10:00:00.000Z",
        "data": {
            "object": "session",
            "id": session_id,
            "user_id": subject,
            "organization_id": None,
            "status": "revoked",
            "auth_method": "password",
            "ip_address": "198.51.100.7",
            "user_agent": "Mozilla/5.0",
            "expires_at": "2026-01-06T10:00:00.000Z",
            "created_at": "2026-01-05T09:00:00.000Z",
            "updated_at": "2026-01-05T10:00:00.000Z",
        },
    }


async def test_workos_session_revoked_refuses_that_session_everywhere(
    app_factory: AppFactory, workos: MockProvider, workos_jwks: respx.MockRouter, clean_db: SqlAdmin
) -> None:
    subject = "user_01REVOKED"
    revoked = workos.token(subject, sid="session_01REVOKED")
    other = workos.token(subject, sid="session_01OTHER")
    settings = merge_overrides(workos, **WEBHOOK_SETTINGS)
    async with app_factory(**settings) as first, app_factory(**settings) as second:
        async with clients(first, second) as (one, two):
            await until_live(first, second)
            for client in (one, two):
                for token in (revoked, other):
                    assert (await me(client, token)).status_code == 200

            delivery = workos_signed(session_revoked("session_01REVOKED", subject, event_id="event_01REV"))
            await post(one, WORKOS, delivery)
            await post(one, WORKOS, delivery)  # a retry: applied once
            assert (await me(one, revoked)).status_code == 401
            await sync(second)
            for client in (one, two):
                refused = await me(client, revoked)
                assert refused.status_code == 401
                assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
                assert (await me(client, other)).status_code == 200
            # A token minted later for the same session is refused too.
            assert (await me(two, workos.token(subject, sid="session_01REVOKED"))).status_code == 401
    assert await ledger_count(clean_db) == 1


async def test_workos_session_revoked_with_a_bad_signature_changes_nothing(
    app_factory: AppFactory, workos: MockProvider, workos_jwks: respx.MockRouter, clean_db: SqlAdmin
) -> None:
    token = workos.token("user_01FORGED", sid="session_01FORGED")
    async with app_factory(**merge_overrides(workos, **WEBHOOK_SETTINGS)) as app, clients(app) as (client,):
        body, headers = workos_signed(
            session_revoked("session_01FORGED", "user_01FORGED"), secret="not-the-secret"
        )
        response = await client.post(WORKOS, content=body, headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert (await me(client, token)).status_code == 200
    assert await ledger_count(clean_db) == 0
