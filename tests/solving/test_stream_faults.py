"""Event streams under hostile headers and under deletions: every stream ends with a final `status`
event and a clean end of body, whatever the client sent and whatever happened to the solution."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from sqlalchemy import text

from service.core.db import asyncpg_connect_args
from service.core.streaming import guarded
from service.solver.example import EXAMPLE_REQUEST
from service.solving.events import last_event_id
from service.solving.repository import CANCEL_CHANNEL, SOLUTIONS_CHANNEL
from tests.kit.instances import benchmark_request
from tests.kit.server import RunningServer
from tests.kit.sql import SqlAdmin, scope_rls_to
from tests.kit.waiting import eventually
from tests.kit.worker import WorkerProcess
from tests.planning.conftest import Caller
from tests.solving.conftest import (
    API,
    Event,
    live_user,
    new_scenario,
    parse_events,
    tracebacks,
)


async def _cancelled_solution(caller: Caller) -> str:
    """A solution that is final already (cancelled while pending: failed), so its stream ends at once."""
    scenario_id = await new_scenario(caller, copy.deepcopy(EXAMPLE_REQUEST))
    queued = await caller.call("POST", f"/scenarios/{scenario_id}/solve", {})
    assert queued.status_code == 202, queued.text
    solution_id = str(queued.json()["id"])
    assert (await caller.call("POST", f"/solutions/{solution_id}/cancel")).status_code == 202
    return solution_id


@pytest.mark.parametrize(
    "last_event_id",
    [
        b"\xb2",  # latin-1 "²": str.isdigit() says yes, int() says no
        b"\xb3",
        b"\xb9",
        b"1\xb2",
        b"-1",
        b"+3",
        b"1_000",
        b"99999999999999999999999",  # beyond any event id a solution can reach
        b"2147483648",
        b"\xc2\xb2",  # "²" in UTF-8
        b"",
    ],
)
async def test_an_unusable_last_event_id_is_treated_as_absent(alice: Caller, last_event_id: bytes) -> None:
    solution_id = await _cancelled_solution(alice)
    response = await alice.call(
        "GET", f"/solutions/{solution_id}/events", headers={"Last-Event-ID": last_event_id}
    )
    assert response.status_code == 200
    events = parse_events(response.text)
    assert [e.event for e in events] == ["status"]
    assert events[0].data == {"status": "failed", "reason": "cancelled before a solution was found"}


async def test_a_usable_last_event_id_still_resumes(alice: Caller) -> None:
    solution_id = await _cancelled_solution(alice)
    response = await alice.call(
        "GET", f"/solutions/{solution_id}/events", headers={"Last-Event-ID": " 2147483647 "}
    )
    assert response.status_code == 200
    assert [e.event for e in parse_events(response.text)] == ["status"]


def test_last_event_id_reads_ascii_decimal_digits_within_range() -> None:
    assert last_event_id("17") == 17
    assert last_event_id(" 17\t") == 17
    assert last_event_id("2147483647") == 2147483647
    for unusable in ("\u0663", "\u00b2", "1\u00b2", "2147483648", "-1", "1.0", "0x10", "", " ", None):
        assert last_event_id(unusable) is None, unusable


# --- deletions under open streams, on every instance ----------------------------------------------


async def _follow(
    http: httpx.AsyncClient, server: RunningServer, path: str, auth: dict[str, str], opened: asyncio.Event
) -> list[Event]:
    """The whole event stream at `path`; `opened` is set once its response has started."""
    async with http.stream("GET", server.url(f"{API}{path}"), headers=auth) as response:
        assert response.status_code == 200
        opened.set()
        body = await response.aread()  # a stream cut mid-body raises here
    return parse_events(body.decode())


@dataclass
class Plan:
    session: str
    scenario: str
    solution: str


async def _queued(
    http: httpx.AsyncClient,
    server: RunningServer,
    auth: dict[str, str],
    request: dict[str, Any],
    **options: Any,
) -> Plan:
    async def created(path: str, body: dict[str, Any], status: int = 201) -> str:
        response = await http.post(server.url(f"{API}{path}"), json=body, headers=auth)
        assert response.status_code == status, response.text
        return str(response.json()["id"])

    session = await created("/sessions", {"name": "streams"})
    scenario = await created(f"/sessions/{session}/scenarios", {"name": "s", "request": request})
    return Plan(session, scenario, await created(f"/scenarios/{scenario}/solve", options, status=202))


_DELETE = {
    "scenario": "/scenarios/{scenario}",
    "session": "/sessions/{session}",
    "solution": "/solutions/{solution}",
}


@pytest.mark.parametrize("deleted", sorted(_DELETE))
async def test_a_deletion_ends_every_open_stream_of_its_solution_with_deleted(
    two_servers: tuple[RunningServer, RunningServer], clean_db: SqlAdmin, deleted: str
) -> None:
    """No worker runs here: the solve stays pending, its streams wait. A deletion through one
    instance ends the streams open on both with one final `status` event, `deleted`."""
    a, b = two_servers
    async with httpx.AsyncClient(timeout=30) as http:
        auth = await live_user(a, http)
        plan = await _queued(http, a, auth, copy.deepcopy(EXAMPLE_REQUEST))
        path = f"/solutions/{plan.solution}/events"
        opened = [asyncio.Event(), asyncio.Event()]
        streams = [
            asyncio.create_task(_follow(http, server, path, auth, event))
            for server, event in zip((a, b), opened, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in opened)), 30)
        target = _DELETE[deleted].format(**dataclasses.asdict(plan))
        assert (await http.delete(a.url(f"{API}{target}"), headers=auth)).status_code == 204
        for events in await asyncio.wait_for(asyncio.gather(*streams), 30):
            assert [(e.event, e.data) for e in events] == [("status", {"status": "deleted"})]
    assert tracebacks(a.records()) == tracebacks(b.records()) == []


async def test_deleting_a_running_solve_ends_its_stream_and_stops_its_worker(
    two_servers: tuple[RunningServer, RunningServer], worker: WorkerProcess, clean_db: SqlAdmin
) -> None:
    a, b = two_servers
    async with httpx.AsyncClient(timeout=30) as http:
        auth = await live_user(a, http)
        plan = await _queued(http, a, auth, benchmark_request("RC208.vrp"), time_limit_s=120)
        opened = asyncio.Event()
        stream = asyncio.create_task(_follow(http, b, f"/solutions/{plan.solution}/events", auth, opened))
        await asyncio.wait_for(opened.wait(), 30)

        async def running() -> bool:
            body = (await http.get(a.url(f"{API}/solutions/{plan.solution}"), headers=auth)).json()
            return bool(body["status"] == "running" and body["progress"])

        await eventually(running, timeout=60)
        assert (await http.delete(a.url(f"{API}/scenarios/{plan.scenario}"), headers=auth)).status_code == 204
        events = await asyncio.wait_for(stream, 30)
    assert events[-1].event == "status" and events[-1].data == {"status": "deleted"}
    assert all(event.event == "progress" for event in events[:-1])

    async def job_closed() -> bool:
        async with clean_db.transaction() as session:
            return (await session.execute(text("SELECT count(*) FROM pgqueuer"))).scalar_one() == 0

    await eventually(job_closed, timeout=30)  # the worker stopped the solve and closed its job
    assert tracebacks(a.records()) == tracebacks(b.records()) == []
    assert "Traceback" not in worker.log()


async def test_the_deletion_itself_announces_deleted_and_cancels_a_running_solve(
    clean_db: SqlAdmin, migrated_url: str, alice: Caller
) -> None:
    """Whichever statement deletes a pending or running solution announces it (migration 0009), in
    the deleting transaction: a rolled-back deletion announces nothing."""
    plan_scenario = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    queued = await alice.call("POST", f"/scenarios/{plan_scenario}/solve", {})
    solution_id = queued.json()["id"]
    heard: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    listener = await asyncpg.connect(**asyncpg_connect_args(migrated_url))
    try:
        for channel in (SOLUTIONS_CHANNEL, CANCEL_CHANNEL, "routebook_test_barrier"):
            await listener.add_listener(
                channel, lambda _c, _p, channel, payload: heard.put_nowait((channel, payload))
            )
        async with clean_db.transaction() as session:
            await scope_rls_to(session, alice.user_id)
            await session.execute(
                text("UPDATE solutions SET status = 'running' WHERE id = :id"), {"id": solution_id}
            )
        with contextlib.suppress(RuntimeError):
            async with clean_db.transaction() as session:
                await scope_rls_to(session, alice.user_id)
                await session.execute(text("DELETE FROM scenarios WHERE id = :id"), {"id": plan_scenario})
                raise RuntimeError("roll back")
        async with clean_db.transaction() as session:
            await scope_rls_to(session, alice.user_id)
            await session.execute(text("DELETE FROM scenarios WHERE id = :id"), {"id": plan_scenario})
        # NOTIFY delivers in commit order: once this arrives, everything committed before it has.
        await listener.execute("SELECT pg_notify('routebook_test_barrier', '')")
        got: list[tuple[str, str]] = []
        while not got or got[-1][0] != "routebook_test_barrier":
            got.append(await asyncio.wait_for(heard.get(), 10))
    finally:
        await listener.close()
    assert [channel for channel, _ in got] == [SOLUTIONS_CHANNEL, CANCEL_CHANNEL, "routebook_test_barrier"]
    announced = dict(got)
    assert orjson.loads(announced[SOLUTIONS_CHANNEL]) == {
        "id": solution_id,
        "status": "deleted",
        "seq": 1,
        "progress": None,
        "reason": None,
    }
    assert announced[CANCEL_CHANNEL] == solution_id


async def test_the_stream_guard_ends_a_failing_body_cleanly_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body() -> AsyncIterator[dict[str, str]]:
        yield {"event": "progress", "data": "{}"}
        raise LookupError("the row went away")

    with caplog.at_level(logging.WARNING, logger="routebook.streaming"):
        items = [item async for item in guarded(body(), "the test's stream")]
    assert items == [{"event": "progress", "data": "{}"}]
    records = [r for r in caplog.records if r.name == "routebook.streaming"]
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in records] == [
        ("WARNING", "the test's stream ended early: LookupError", None)
    ]
