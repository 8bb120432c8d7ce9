"""The restart that used to lose everything: rows outlive the engine and the app."""

from __future__ import annotations

from sqlalchemy import text

from service.db import new_id
from tests.conftest import AppFactory


async def test_rows_survive_disposing_the_engine_and_a_new_app(app_factory: AppFactory) -> None:
    user_id = new_id()
    async with app_factory() as first:
        async with first.state.db.transaction() as session:
            await session.execute(
                text(
                    "INSERT INTO users (id, provider, subject, email) VALUES (:id, 'dev', 'keep', 'k@example.com')"
                ),
                {"id": user_id},
            )
    # The first app's lifespan has ended: its engine and pool are gone.
    async with app_factory() as second:
        async with second.state.db.transaction() as session:
            email = (
                await session.execute(text("SELECT email FROM users WHERE id = :id"), {"id": user_id})
            ).scalar()
    assert email == "k@example.com"


async def test_a_failed_request_transaction_writes_nothing(app_factory: AppFactory) -> None:
    async with app_factory() as app:
        try:
            async with app.state.db.transaction() as session:
                await session.execute(
                    text("INSERT INTO users (id, provider, subject) VALUES (:id, 'dev', 'x')"),
                    {"id": new_id()},
                )
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        async with app.state.db.transaction() as session:
            assert (await session.execute(text("SELECT count(*) FROM users"))).scalar_one() == 0
