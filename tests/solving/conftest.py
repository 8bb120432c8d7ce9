"""Helpers for the solving tests: callers, scenarios, a worker, the events of a stream."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.kit.server import RunningServer, running_server
from tests.kit.waiting import eventually
from tests.kit.worker import SharedWorker, WorkerProcess

# The caller fixtures resolve `app` from the requesting test's own conftest.
from tests.planning.conftest import Caller, alice, bob, http, sign_in  # noqa: F401

# --- solving through the API, with a real worker process ------------------------------------------

API = "/api/v1"


@dataclasses.dataclass(frozen=True)
class Event:
    event: str
    id: str | None
    data: dict[str, Any]


def parse_events(text: str) -> list[Event]:
    """Server-sent events from a complete stream body (comments/pings skipped)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if "data" in fields:
            events.append(
                Event(fields.get("event", "message"), fields.get("id"), orjson.loads(fields["data"]))
            )
    return events


@pytest.fixture
async def worker(shared_worker: SharedWorker) -> AsyncIterator[WorkerProcess]:
    """A running solve worker (2 slots, 3 s lease), this test process's shared one: idle when the
    test starts, and settled again when it ends. Tests that stop or kill workers start their own."""
    yield await shared_worker.acquire()
    await shared_worker.settle()


async def new_scenario(caller: Caller, request: dict[str, Any], name: str = "plan") -> str:
    session = await caller.call("POST", "/sessions", {"name": "solving"})
    assert session.status_code == 201, session.text
    scenario = await caller.call(
        "POST", f"/sessions/{session.json()['id']}/scenarios", {"name": name, "request": request}
    )
    assert scenario.status_code == 201, scenario.text
    return str(scenario.json()["id"])


async def solution(caller: Caller, solution_id: str) -> dict[str, Any]:
    response = await caller.call("GET", f"/solutions/{solution_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def until_status(
    caller: Caller, solution_id: str, *statuses: str, timeout: float = 60
) -> dict[str, Any]:
    """The solution once its status is one of `statuses` (polled, with a deadline)."""
    found: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal found
        found = await solution(caller, solution_id)
        return found["status"] in statuses

    await eventually(reached, timeout=timeout, every=0.1)
    return found


# --- the app as production runs it: `python -m service` processes, for tests of streams and logs ---


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses `two_servers` runs in one xdist group, so one test process starts the
    pair once (a server start costs about 1.5 CPU seconds of imports) rather than each process
    that drew one of those tests starting its own, and again after each other module's test."""
    for item in items:
        if "two_servers" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group("two_servers"))


@pytest.fixture(scope="session")
def two_servers(
    migrated_url: str, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, RunningServer]]:
    """Two `python -m service` processes on the test database (INFO logs as JSON, read by the tests),
    for the whole run of the test process that runs their group: its tests sign in as users of
    their own (`live_user`), so they never meet another test's cached identity."""
    env = {
        "ENVIRONMENT": "test",
        "DATABASE_URL": migrated_url,
        "AUTH_PROVIDERS": "dev",
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "DB_POOL_SIZE": "2",
    }
    logs = tmp_path_factory.mktemp("servers")
    with running_server(env, logs / "a.log") as a, running_server(env, logs / "b.log") as b:
        yield a, b


async def live_user(server: RunningServer, http: httpx.AsyncClient) -> dict[str, str]:  # noqa: F811 (the http fixture)
    """The Authorization header of a new dev user, minted by `server` (loopback only)."""
    minted = await http.post(server.url("/dev/token"), json={"email": f"{uuid.uuid4().hex}@example.com"})
    assert minted.status_code == 200, minted.text
    return {"Authorization": f"Bearer {minted.json()['access_token']}"}


def tracebacks(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The log records that carry a traceback (an `exc` member, or a raw line of one)."""
    return [
        record
        for record in records
        if "exc" in record
        or "Traceback" in str(record.get("raw", ""))
        or "Traceback" in str(record.get("msg", ""))
    ]
