"""Shared fixtures: a real PostgreSQL (TEST_DATABASE_URL's server, else an embedded one) started once
per run, a database of each test process's own cloned from one migrated template (tests/kit/
databases.py), truncated before every test that touches it; the app built by its factory with its
lifespan running; an httpx client speaking ASGI to it.

`make test` runs the tests in parallel (pytest-xdist, one process per core, `--dist loadgroup`);
tests marked `serial` share one group and never run beside each other. The order is shuffled
(pytest-randomly: the header shows the seed, `--randomly-seed=N` replays an order, `-p no:randomly`
keeps file order).

TEST_PGBOUNCER=1 puts the app behind a real PgBouncer in transaction mode: the apps' DATABASE_URL
(and `service_db`) reach the test database through PgBouncer with DB_STATEMENT_CACHE_SIZE=0, while
DATABASE_DIRECT_URL (the LISTEN connection), migrations and `admin_db` go to the server directly.
A wire-protocol guard sits between the app and PgBouncer, and every test fails that sent something
transaction pooling breaks (tests/kit/wire.py). Without a pgbouncer binary those tests are skipped.
"""

from __future__ import annotations

import itertools
import os
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import respx
from _pytest.nodeid import NodeId
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

import service.tables  # noqa: F401  (every table on the metadata, for the truncation below)
from service.config import Settings
from service.core.db import Database, metadata
from service.main import create_app
from tests.kit.databases import TestServer
from tests.kit.pgbouncer import PgBouncer, pgbouncer_binary, running_pgbouncer
from tests.kit.sql import SqlAdmin
from tests.kit.wire import TransactionGuard, running_guard
from tests.kit.worker import SharedWorker, WorkerProcess

AppFactory = Callable[..., AbstractAsyncContextManager[FastAPI]]

# The tests known to be slow start first (tests/kit/ordering.py).
pytest_plugins = ["tests.kit.ordering"]

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


# -- the run's server: started once by the process that controls the run ---------------------------
# Under xdist the controller starts it and gives each worker a database cloned from one migrated
# template (pytest_configure_node); run without xdist, the one process does both.
_WORKER_DATABASE = "routebook_database_url"
_server_key = pytest.StashKey[TestServer]()


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "serial: shares machine-wide state; runs in xdist group 'serial'")
    if _is_xdist_worker(config) or config.option.collectonly:
        return
    config.stash[_server_key] = TestServer.start(_test_database_url())


def pytest_unconfigure(config: pytest.Config) -> None:
    server = config.stash.get(_server_key, None)
    if server is not None:
        server.stop()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist, in the controller, before a worker starts: the worker's own database."""
    server: TestServer = node.config.stash[_server_key]
    node.workerinput[_WORKER_DATABASE] = server.clone(node.workerinput["workerid"])


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # pytest 9.2 builds a node id from the function's original name and its callspec. schemathesis'
    # items (`test…[GET /health]`, one per operation) have no callspec, so all 28 got one id, and
    # xdist, which schedules by id, ran one operation of 28. Each gets its own name's id.
    ids = Counter(item.nodeid for item in items)
    for item in items:
        if ids[item.nodeid] > 1 and item.parent is not None:
            item._id = item.parent.id.child(item.name)  # type: ignore[attr-defined]
    # Tests marked serial share one xdist group: under --dist loadgroup they run one after another
    # on one worker, never beside each other.
    for item in items:
        if item.get_closest_marker("serial") and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group("serial"))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """xdist's loadgroup, through the attribute pytest 9.2 reads. xdist appends `@<group>` to
    `item._nodeid` when it collects, but pytest 9.2 no longer builds the id from it, so every group
    was silently spread over every worker (two browsers, two outage servers). Here, before an xdist
    worker reports its collection, each grouped item's id carries its group as xdist means it to."""
    if not _is_xdist_worker(session.config) or not session.config.getvalue("loadgroup"):
        return
    for item in session.items:
        marks = item.iter_markers("xdist_group")
        groups = sorted(
            {str(mark.args[0] if mark.args else mark.kwargs.get("name", "default")) for mark in marks}
        )
        if groups and "@" not in item.nodeid:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(groups)}")  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def migrated_url(request: pytest.FixtureRequest) -> str:
    """This process's own database, migrated (a clone of the run's template)."""
    config = request.config
    if _is_xdist_worker(config):
        url: str = config.workerinput[_WORKER_DATABASE]  # type: ignore[attr-defined]
        return url
    return config.stash[_server_key].clone("main")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test that used a solve worker says where its log is (and how it ends)."""
    report = yield
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, WorkerProcess):
                tail = "\n".join(value.log().splitlines()[-40:])
                report.sections.append(("solve worker", f"log: {value.log_path}\n…\n{tail}"))
    return report


@pytest.fixture(scope="session")
async def shared_worker(
    migrated_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SharedWorker]:
    """This test process's solve worker, started when a test first needs one (tests/kit/worker.py)."""
    shared = SharedWorker(
        migrated_url,
        tmp_path_factory.mktemp("solve-worker"),
        slots=2,
        heartbeat_timeout_s=3,
        # Its webhook dispatcher may deliver to the tests' receivers on 127.0.0.1.
        OUTBOUND_WEBHOOK_ALLOW_PRIVATE="true",
    )
    try:
        yield shared
    finally:
        await shared.close()


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


# Empties the tables in one statement. A login role that row-level security does not bind (a
# superuser: the embedded run and the PostgreSQL 15 run) deletes every row, children first, which
# costs almost nothing on the few rows a test leaves. One that it binds (the non-superuser owner
# run: FORCEd policies would hide the rows from DELETE) truncates instead, and only the tables
# written since their last TRUNCATE: such a table has no page at all (TRUNCATE gives it a new, empty
# file), which its size shows without reading a row.
_EMPTY_TABLES = """
DO $$
DECLARE
    tables text[] := string_to_array('{tables}', ',');
    name text;
    written text;
BEGIN
    IF (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user) THEN
        FOREACH name IN ARRAY tables LOOP
            EXECUTE 'DELETE FROM ' || quote_ident(name);
        END LOOP;
    ELSE
        SELECT string_agg(quote_ident(relname), ', ') INTO written
        FROM pg_class
        WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'
          AND relname = ANY(tables) AND pg_relation_size(oid) > 0;
        IF written IS NOT NULL THEN
            EXECUTE 'TRUNCATE ' || written || ' CASCADE';
        END IF;
    END IF;
END $$
"""


_DEADLOCK_DETECTED = "40P01"


async def truncate_all(admin_db: SqlAdmin) -> None:
    """Every table empty (children first, for the DELETEs). The queue's own tables too: a job left
    by one test must not reach the next one's worker."""
    children_first = [table.name for table in reversed(metadata.sorted_tables)]
    tables = ",".join([*children_first, "pgqueuer", "pgqueuer_log"])
    # The shared solve worker may still be finishing the previous test's job: its transaction
    # and this one lock the same tables in different orders, and PostgreSQL may pick this one
    # as a deadlock's victim. Nothing was written then, so it is simply tried again.
    for attempt in itertools.count(1):
        try:
            async with admin_db.transaction() as session:
                await session.execute(text(_EMPTY_TABLES.format(tables=tables)))
            return
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) != _DEADLOCK_DETECTED or attempt == 5:
                raise


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


# One TLS context for every test's outgoing client: building one loads the CA bundle (about 20 ms
# of CPU, for each of several hundred tests); respx answers their requests anyway.
_TLS = ssl.create_default_context()


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    """Mocks every outgoing HTTP request; one without a route fails instead of going out."""
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock_router:
        yield mock_router


@pytest.fixture
async def http(router: respx.MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    """An outgoing client (JWKS, provider APIs) answered by `router`."""
    async with httpx.AsyncClient(verify=_TLS) as client:
        yield client


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every jwt.decode call: the signature check a verified-token cache hit skips."""
    calls: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return calls
