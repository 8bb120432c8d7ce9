"""Fixtures for tests against a real `python -m service` subprocess (tests/kit/server.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.kit.server import RunningServer, running_server
from tests.webhooks.conftest import CLERK_SECRET

ServerFactory = Callable[..., AbstractContextManager[RunningServer]]


@pytest.fixture(scope="session")
def server_env(migrated_url: str, data_dir: Path) -> dict[str, str]:
    """The test database and the dev issuer (same key as the test process), INFO logs as JSON."""
    return {
        "ENVIRONMENT": "test",
        "DATABASE_URL": migrated_url,
        "AUTH_PROVIDERS": "dev",
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "CLERK_WEBHOOK_SECRET": CLERK_SECRET,
        "DB_POOL_SIZE": "2",
    }


@pytest.fixture
def serve(server_env: dict[str, str], tmp_path: Path) -> ServerFactory:
    """`with serve(TIMEOUT_KEEP_ALIVE="1", args=[...]) as server:` — a server with these settings."""

    def start(*, args: tuple[str, ...] = (), **settings: str) -> AbstractContextManager[RunningServer]:
        return running_server({**server_env, **settings}, tmp_path / "server.log", args=args)

    return start


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses `shared_server` runs in one xdist group, so one test process starts it
    once, rather than each process that drew one of those tests (again after another module's)."""
    for item in items:
        if "shared_server" in getattr(item, "fixturenames", ()) and not item.get_closest_marker(
            "xdist_group"
        ):
            item.add_marker(pytest.mark.xdist_group("shared_server"))


@pytest.fixture(scope="session")
def shared_server(
    server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One server with default settings for every test of its group (they only read its log by
    request id)."""
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with running_server(server_env, log_path) as server:
        yield server
