"""A new provider plugs in through one module and one `register()` call: tokens, roles, webhooks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from service import providers
from tests.conftest import AppFactory, client_for
from tests.providers.acme import Acme


@pytest.fixture
def acme() -> Iterator[Acme]:
    provider = Acme()
    providers.register(provider)
    yield provider
    providers.unregister(provider.name)


async def test_a_registered_provider_signs_users_in_and_syncs_them(
    acme: Acme, app_factory: AppFactory
) -> None:
    async with app_factory(auth_providers=["acme"]) as app, client_for(app) as http:
        token = acme.token("acme|7", groups=["admin"], email="seven@acme.test")
        me = await http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text
        assert (me.json()["provider"], me.json()["subject"], me.json()["roles"]) == (
            "acme",
            "acme|7",
            ["admin"],
        )
        assert (
            await http.get("/api/v1/admin/users", headers={"Authorization": f"Bearer {token}"})
        ).status_code == 200

        forged = Acme().token("acme|7")  # another key, same issuer
        assert (
            await http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {forged}"})
        ).status_code == 401

        now = datetime.now(UTC).isoformat()
        body, headers = acme.delivery(
            {"id": "ev1", "type": "updated", "user": "acme|7", "email": "new@acme.test", "at": now}
        )
        assert (await http.post("/api/v1/webhooks/acme", content=body, headers=headers)).status_code == 204
        assert (
            await http.post(
                "/api/v1/webhooks/acme", content=body, headers={**headers, "x-acme-signature": "0" * 64}
            )
        ).status_code == 401
        deleted, deleted_headers = acme.delivery({"id": "ev2", "type": "deleted", "user": "acme|7"})
        assert (
            await http.post("/api/v1/webhooks/acme", content=deleted, headers=deleted_headers)
        ).status_code == 204
        gone = await http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert gone.status_code == 401


def test_an_unregistered_provider_is_refused_by_settings(settings_for: object) -> None:
    from service.config import Settings

    with pytest.raises(ValueError, match="acme"):
        Settings(_env_file=None, environment="test", auth_providers=["acme"])  # type: ignore[call-arg]


async def test_a_provider_without_webhooks_has_no_receiver(app_factory: AppFactory) -> None:
    async with app_factory() as app, client_for(app) as http:
        response = await http.post(
            "/api/v1/webhooks/dev", content=b"{}", headers={"content-type": "application/json"}
        )
        unknown = await http.post(
            "/api/v1/webhooks/nope", content=b"{}", headers={"content-type": "application/json"}
        )
    assert response.status_code == unknown.status_code == 404
