"""Shared fixtures: a real PostgreSQL (TEST_DATABASE_URL's server, else an embedded one), migrated
once per run into a fresh database, truncated before every test that touches it; the app built by
its factory with its lifespan running; an httpx client speaking ASGI to it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url

import service.tables  # noqa: F401  (every table on the metadata, for the truncation below)
from service.config import Settings
from service.db import Database, metadata
from service.devdb import EmbeddedPostgres, drop_database, ensure_database, start_embedded
from service.main import create_app
from service.migrations import upgrade
from tests.kit.sql import SqlAdmin

AppFactory = Callable[..., AbstractAsyncContextManager[FastAPI]]


def _test_database_url() -> str | None:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        return None
    return Settings(environment="test", database_url=url).database_url


def _stop_on_sigterm(embedded: EmbeddedPostgres) -> None:
    """A CI timeout sends SIGTERM, which skips atexit: stop the embedded server first."""

    def handler(signum: int, _frame: object) -> None:
        embedded.stop()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of its own for this run: concurrent runs on one server never collide."""
    server_url = _test_database_url()
    name = f"routebook_test_{uuid.uuid4().hex[:10]}"
    if server_url:
        url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        asyncio.run(ensure_database(url))
        try:
            yield url
        finally:
            asyncio.run(drop_database(url))
    else:
        embedded = start_embedded(tmp_path_factory.mktemp("postgres") / "pgdata", persistent=False)
        _stop_on_sigterm(embedded)
        url = embedded.url(name)
        asyncio.run(ensure_database(url))
        try:
            yield url
        finally:
            embedded.stop()


@pytest.fixture(scope="session")
def migrated_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # pytest's temporary tree: the dev issuer's key does not pile up in /tmp run after run.
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def settings_for(migrated_url: str, data_dir: Path) -> Callable[..., Settings]:
    """Settings for a test app: the test database, the dev issuer, overridable per test."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "database_url": migrated_url,
            "data_dir": data_dir,
            "auth_providers": ["dev"],
            "log_level": "WARNING",
            "db_pool_size": 5,
            "db_max_overflow": 20,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return build


@pytest.fixture
def settings(settings_for: Callable[..., Settings]) -> Settings:
    return settings_for()


@pytest.fixture(scope="session")
async def admin_db(migrated_url: str) -> AsyncIterator[SqlAdmin]:
    """The login role, no RLS role: for arranging rows and checking what a request really wrote."""
    db = SqlAdmin(migrated_url)
    yield db
    await db.dispose()


@pytest.fixture(scope="session")
async def service_db(migrated_url: str) -> AsyncIterator[Database]:
    """The app's own database access (asyncpg), for calling services and repositories directly."""
    db = Database(migrated_url, max_size=10)
    yield db
    await db.close()


async def truncate_all(admin_db: SqlAdmin) -> None:
    # The queue's own tables too: a job left by one test must not reach the next one's worker.
    tables = ", ".join([*(table.name for table in metadata.sorted_tables), "pgqueuer", "pgqueuer_log"])
    async with admin_db.transaction() as session:
        await session.execute(text(f"TRUNCATE {tables} CASCADE"))


@pytest.fixture
async def clean_db(admin_db: SqlAdmin) -> SqlAdmin:
    """Every database test starts from empty tables, so tests pass in any order."""
    await truncate_all(admin_db)
    return admin_db


@pytest.fixture
def app_factory(clean_db: SqlAdmin, settings_for: Callable[..., Settings]) -> AppFactory:
    """`async with app_factory(**settings) as app:` — an app with its lifespan running."""

    @asynccontextmanager
    async def build(**overrides: Any) -> AsyncIterator[FastAPI]:
        app = create_app(settings_for(**overrides))
        async with app.router.lifespan_context(app):
            yield app

    return build


@asynccontextmanager
async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def app(app_factory: AppFactory) -> AsyncIterator[FastAPI]:
    async with app_factory() as application:
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as http:
        yield http


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    """Mocks every outgoing HTTP request; one without a route fails instead of going out."""
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock_router:
        yield mock_router


@pytest.fixture
async def http(router: respx.MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    """An outgoing client (JWKS, provider APIs) answered by `router`."""
    async with httpx.AsyncClient() as client:
        yield client
