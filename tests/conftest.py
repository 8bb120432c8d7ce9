"""Shared fixtures: a real PostgreSQL (TEST_DATABASE_URL's server, else an embedded one), migrated
once per run into a fresh database, truncated before every test that touches it; the app built by
its factory with its lifespan running; an httpx client speaking ASGI to it.

TEST_PGBOUNCER=1 puts the app behind a real PgBouncer in transaction mode: the apps' DATABASE_URL
(and `service_db`) reach the test database through PgBouncer with DB_STATEMENT_CACHE_SIZE=0, while
DATABASE_DIRECT_URL (the LISTEN connection), migrations and `admin_db` go to the server directly.
A wire-protocol guard sits between the app and PgBouncer, and every test fails that sent something
transaction pooling breaks (tests/kit/wire.py). Without a pgbouncer binary those tests are skipped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
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
from tests.kit.pgbouncer import PgBouncer, pgbouncer_binary, running_pgbouncer
from tests.kit.sql import SqlAdmin
from tests.kit.wire import TransactionGuard, running_guard

AppFactory = Callable[..., AbstractAsyncContextManager[FastAPI]]

# TEST_PGBOUNCER=1: through PgBouncer, skipped without a pgbouncer binary; =require: failed instead.
_PGBOUNCER_MODE = os.environ.get("TEST_PGBOUNCER", "").strip().lower()
PGBOUNCER = _PGBOUNCER_MODE not in {"", "0", "false", "no"}
# This run's PgBouncer and its guard, once started: every test's traffic through them is checked.
_poolers: list[Pooler] = []


def pytest_report_header() -> str:
    where = "TEST_DATABASE_URL" if os.environ.get("TEST_DATABASE_URL") else "embedded PostgreSQL"
    if PGBOUNCER:
        return f"database: {where}; the app through PgBouncer (transaction mode, TEST_PGBOUNCER=1)"
    return f"database: {where}, the app connected directly"


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
def database_url() -> Iterator[str]:
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
        # Not under pytest's temporary tree: each new pytest run on this machine makes that tree
        # private to root again, and PgBouncer, running as the server's user, would lose its way to
        # the server's socket mid-run.
        parent = Path(tempfile.mkdtemp(prefix="routebook-test-postgres-"))
        embedded = start_embedded(parent / "pgdata", persistent=False)
        _stop_on_sigterm(embedded)
        url = embedded.url(name)
        asyncio.run(ensure_database(url))
        try:
            yield url
        finally:
            embedded.stop()
            shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def migrated_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url


@dataclass(frozen=True)
class Pooler:
    pgbouncer: PgBouncer
    guard: TransactionGuard
    url: str  # the test database, through the guard and PgBouncer


@pytest.fixture(scope="session")
def pooler(migrated_url: str) -> Iterator[Pooler]:
    """PgBouncer (transaction mode) in front of the test server, the wire guard in front of it."""
    if pgbouncer_binary() is None:
        if _PGBOUNCER_MODE == "require":
            pytest.fail("TEST_PGBOUNCER=require but pgbouncer is not installed (apt-get install pgbouncer)")
        pytest.skip(
            "TEST_PGBOUNCER=1 but pgbouncer is not installed (apt-get install pgbouncer): "
            "the PgBouncer run is skipped"
        )
    with running_pgbouncer(migrated_url) as pgbouncer:
        with running_guard(pgbouncer.host, pgbouncer.port) as guard:
            pooled = Pooler(pgbouncer, guard, guard.url(pgbouncer.url(migrated_url)))
            _poolers.append(pooled)
            try:
                yield pooled
            finally:
                _poolers.remove(pooled)
                assert not guard.errors, f"the wire guard failed: {guard.errors}"


@pytest.fixture(scope="session")
def app_database_url(request: pytest.FixtureRequest, migrated_url: str) -> str:
    """What the app's DATABASE_URL names: the test database, or the same through PgBouncer."""
    if not PGBOUNCER:
        return migrated_url
    pooled: Pooler = request.getfixturevalue("pooler")
    return pooled.url


@pytest.fixture(autouse=True)
def _transaction_pooling_safe() -> Iterator[None]:
    """In the PgBouncer run: nothing this test made the app send breaks transaction pooling, and
    PgBouncer is still up (one that died would fail every later test with a 503, not say why)."""
    for pooled in _poolers:
        pooled.guard.take_violations()
    yield
    for pooled in _poolers:
        pooled.pgbouncer.check_alive()
        violations = pooled.guard.take_violations()
        assert not violations, "sent through PgBouncer in transaction mode, unsafe:\n" + "\n".join(
            map(str, violations)
        )


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # pytest's temporary tree: the dev issuer's key does not pile up in /tmp run after run.
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def settings_for(migrated_url: str, app_database_url: str, data_dir: Path) -> Callable[..., Settings]:
    """Settings for a test app: the test database, the dev issuer, overridable per test."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "database_url": app_database_url,
            "data_dir": data_dir,
            "auth_providers": ["dev"],
            "log_level": "WARNING",
            "db_pool_size": 5,
            "db_max_overflow": 20,
        }
        if PGBOUNCER:
            # LISTEN needs a session of its own: the listener goes to the server directly.
            values.update(database_direct_url=migrated_url, db_statement_cache_size=0)
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
async def service_db(app_database_url: str) -> AsyncIterator[Database]:
    """The app's own database access (asyncpg), for calling services and repositories directly."""
    db = Database(app_database_url, max_size=10, statement_cache_size=0 if PGBOUNCER else 100)
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
