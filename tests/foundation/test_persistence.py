"""The restart that used to lose everything: rows outlive the engine and the app."""

from __future__ import annotations

from service.core.db import new_id
from service.deps import app_state
from tests.conftest import AppFactory, client_for


async def test_rows_survive_disposing_the_engine_and_a_new_app(app_factory: AppFactory) -> None:
    """The restart that used to lose everything: written through the API, read through a new app."""
    async with app_factory() as first, client_for(first) as client:
        auth = {
            "Authorization": f"Bearer {app_state(first).dev_issuer.mint(subject='keeper', email='k@example.com')}"
        }
        created = await client.post("/api/v1/sessions", json={"name": "Monday deliveries"}, headers=auth)
        assert created.status_code == 201, created.text
        session_id = created.json()["id"]
    # The first app's lifespan has ended: its engine and pool are disposed.
    async with app_factory() as second, client_for(second) as client:
        auth = {
            "Authorization": f"Bearer {app_state(second).dev_issuer.mint(subject='keeper', email='k@example.com')}"
        }
        read = await client.get(f"/api/v1/sessions/{session_id}", headers=auth)
    assert read.status_code == 200
    assert read.json()["name"] == "Monday deliveries"


async def test_a_failed_request_transaction_writes_nothing(app_factory: AppFactory) -> None:
    async with app_factory() as app:
        try:
            async with app_state(app).db.privileged() as conn:
                await conn.execute(
                    "INSERT INTO users (id, provider, subject) VALUES ($1, 'dev', 'x')", new_id()
                )
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        async with app_state(app).db.privileged() as conn:
            assert await conn.fetchval("SELECT count(*) FROM users") == 0
