"""A solve's lease under faults: workers killed, frozen, cut off from the queue — every solve ends
exactly once, none stays pending or running for good, and no job is closed as what it was not.

Real worker processes (`python -m service.worker`) with a short lease (SOLVE_HEARTBEAT_TIMEOUT_S=2),
the app in process; a worker's fate is decided with signals and pg_terminate_backend, never guessed
from how long something takes.
"""

from __future__ import annotations

import contextlib
import copy
import signal
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import pytest
from sqlalchemy import text

from service.core.db import Database
from service.solver.example import EXAMPLE_REQUEST
from service.solver.outcome import CANCELLED_EARLY
from service.solving.queue import stranded_solves
from service.solving.repository import LOST, end_stranded
from tests.kit.instances import benchmark_request
from tests.kit.sql import SqlAdmin, scope_rls_to
from tests.kit.waiting import eventually
from tests.kit.worker import SharedWorker, WorkerProcess, solve_worker
from tests.planning.conftest import Caller
from tests.solving.conftest import new_scenario, solution, until_status

LEASE_S = 2


async def _queue(caller: Caller, scenario_id: str, time_limit_s: int) -> str:
    response = await caller.call("POST", f"/scenarios/{scenario_id}/solve", {"time_limit_s": time_limit_s})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def _has_feasible(caller: Caller, solution_id: str) -> bool:
    body = await solution(caller, solution_id)
    return bool(body["status"] == "running" and body["progress"] and body["progress"]["feasible"])


async def _solve_row(db: SqlAdmin, owner: uuid.UUID, solution_id: str) -> dict[str, Any]:
    async with db.transaction() as session:
        await scope_rls_to(session, owner)
        row = (
            await session.execute(
                text("SELECT status, attempts, reason FROM solutions WHERE id = :id"), {"id": solution_id}
            )
        ).one()
    return dict(row._mapping)


async def _job_log(db: SqlAdmin) -> list[str]:
    async with db.transaction() as session:
        rows = await session.execute(text("SELECT status::text FROM pgqueuer_log ORDER BY id"))
        return [row[0] for row in rows]


async def _queue_is_empty(db: SqlAdmin) -> bool:
    async with db.transaction() as session:
        return (await session.execute(text("SELECT count(*) FROM pgqueuer"))).scalar_one() == 0


Workers = Callable[[str], AbstractAsyncContextManager[WorkerProcess]]
# Long enough for the first feasible plan to be seen before the solve ends on a loaded machine;
# the tests then freeze the solve (SIGSTOP), so what happens meanwhile never races its end, and
# once thawed it is past its time and ends at once.
FROZEN_SOLVE_LIMIT_S = 5


@pytest.fixture
async def workers(migrated_url: str, tmp_path: Path, shared_worker: SharedWorker) -> Workers:
    """`async with workers("a") as a:` — a one-slot worker with a 2 s lease, stopped at the block's end.
    These tests count the workers' connections: this process's shared worker is stopped first."""
    await shared_worker.close()

    def start(name: str) -> AbstractAsyncContextManager[WorkerProcess]:
        # A solve frozen by a test must not meet the watchdog (time limit + grace) meanwhile.
        return solve_worker(
            migrated_url, tmp_path / name, slots=1, heartbeat_timeout_s=LEASE_S, SOLVE_GRACE_S="120"
        )

    return start


async def test_a_solve_cancelled_while_its_worker_is_dead_is_ended_by_the_next_pick(
    alice: Caller, workers: Workers, clean_db: SqlAdmin
) -> None:
    scenario_id = await new_scenario(alice, benchmark_request("RC208.vrp"))
    async with workers("a") as first:
        solution_id = await _queue(alice, scenario_id, time_limit_s=120)
        await until_status(alice, solution_id, "running", timeout=60)
        first.signal(signal.SIGKILL)
        await first.wait_exit()
    # Accepted: the row keeps running with cancel_requested, and no worker hears the NOTIFY.
    assert (await alice.call("POST", f"/solutions/{solution_id}/cancel")).status_code == 202
    async with workers("b") as second:
        done = await until_status(alice, solution_id, "succeeded", "failed", "cancelled", timeout=60)
        await eventually(lambda: _queue_is_empty(clean_db), timeout=30)
    assert (done["status"], done["reason"]) == ("failed", CANCELLED_EARLY)
    row = await _solve_row(clean_db, alice.user_id, solution_id)
    assert row["attempts"] == 1  # the cancelled solve was not run again
    assert f"solving {solution_id}" not in second.log()
    assert (await _job_log(clean_db))[-1] == "canceled"
    # It no longer holds one of alice's active-solve slots, and its stream ends.
    events = await alice.call("GET", f"/solutions/{solution_id}/events")
    assert events.text.rstrip().endswith('"reason":"cancelled before a solution was found"}')


async def test_the_sweeper_ends_a_cancelled_solve_no_worker_is_free_to_pick(
    alice: Caller, workers: Workers, clean_db: SqlAdmin
) -> None:
    """Two one-slot workers, each running a long solve; the one running S is SIGKILLed and S is
    cancelled. The survivor stays busy, so nothing would pick S's stale job: its sweeper ends S
    (within the lease plus a grace) while the other solve still runs."""
    async with workers("a") as a, workers("b") as b:
        first = await _queue(alice, await new_scenario(alice, benchmark_request("RC208.vrp")), 120)
        second = await _queue(alice, await new_scenario(alice, benchmark_request("RC208.vrp")), 120)
        for solution_id in (first, second):
            await until_status(alice, solution_id, "running", timeout=60)
        await eventually(
            lambda: _both_placed(a, b, first, second), timeout=30
        )  # each worker has logged the solve it runs
        doomed, survivor = (a, b) if f"solving {first}" in a.log() else (b, a)
        busy = await survivor.running_solve()
        busy.suspend()  # it stays busy without taking a core from the rest of the suite
        doomed.signal(signal.SIGKILL)
        await doomed.wait_exit()
        assert (await alice.call("POST", f"/solutions/{first}/cancel")).status_code == 202
        done = await until_status(alice, first, "succeeded", "failed", "cancelled", timeout=60)
        assert (await solution(alice, second))["status"] == "running"  # the survivor never got free
        assert (done["status"], done["reason"]) == ("failed", CANCELLED_EARLY)
        assert "ended by the sweeper" in survivor.log()
        assert f"solving {first}" not in survivor.log()
        busy.resume()
        await alice.call("POST", f"/solutions/{second}/cancel")
        await until_status(alice, second, "cancelled", "failed", timeout=30)


async def _both_placed(a: WorkerProcess, b: WorkerProcess, first: str, second: str) -> bool:
    logs = a.log() + b.log()
    return f"solving {first}" in logs and f"solving {second}" in logs


async def test_the_sweep_ends_only_solves_nothing_will_finish(
    alice: Caller, bob: Caller, clean_db: SqlAdmin, service_db: Database
) -> None:
    """The sweep itself, across users, on rows arranged directly: a running solve whose job left the
    queue (lost), a cancelled one whose worker fell silent (its job stale), and, left alone, a solve
    waiting in the queue, one held by a live worker, one whose worker fell silent but is not
    cancelled (another worker will take it), and one that became stranded only just now."""
    ids: dict[str, str] = {}
    for name, caller in (
        ("lost", alice),
        ("cancelled, stale", bob),
        ("queued", alice),
        ("live", bob),
        ("stale", alice),
        ("just now", bob),
    ):
        scenario_id = await new_scenario(caller, {"depots": [], "stops": [], "vehicle_types": []})
        async with clean_db.transaction() as session:
            await scope_rls_to(session, caller.user_id)
            ids[name] = str(uuid.uuid4())
            await session.execute(
                text(
                    "INSERT INTO solutions (id, workspace_id, user_id, scenario_id, status, cancel_requested, updated_at) "
                    "VALUES (:id, :user_id, :user_id, :scenario_id, :status, :cancelled, now() - :age * interval '1 s')"
                ),
                {
                    "id": ids[name],
                    "user_id": caller.user_id,
                    "scenario_id": scenario_id,
                    "status": "pending" if name == "queued" else "running",
                    "cancelled": name == "cancelled, stale",
                    "age": 1 if name == "just now" else 60,
                },
            )
            jobs = {"cancelled, stale": ("picked", 60), "queued": ("queued", 0), "live": ("picked", 0)}
            jobs["stale"] = ("picked", 60)
            if name in jobs:
                status, age = jobs[name]
                await session.execute(
                    text(
                        "INSERT INTO pgqueuer (priority, status, entrypoint, dedupe_key, heartbeat) "
                        "VALUES (0, :status, 'solve', :key, now() - :age * interval '1 s')"
                    ),
                    {"status": status, "key": ids[name], "age": age},
                )
    lease = timedelta(seconds=LEASE_S)
    async with service_db.as_sweeper() as conn:
        stranded = await stranded_solves(conn, stranded_for=2 * lease, lease=lease)
    assert {str(solve.id) for solve in stranded} == {ids["lost"], ids["cancelled, stale"]}
    for solve in stranded:
        async with service_db.privileged() as conn:
            assert await end_stranded(conn, solve, lease=lease)
    for name, caller in (("lost", alice), ("cancelled, stale", bob)):
        row = await _solve_row(clean_db, caller.user_id, ids[name])
        assert (row["status"], row["reason"]) == ("failed", LOST if name == "lost" else CANCELLED_EARLY)
    for name, caller in (("queued", alice), ("live", bob), ("stale", alice), ("just now", bob)):
        assert (await _solve_row(clean_db, caller.user_id, ids[name]))["status"] in ("pending", "running")
    async with clean_db.transaction() as session:
        keys = (await session.execute(text("SELECT dedupe_key FROM pgqueuer ORDER BY id"))).scalars().all()
    assert keys == [ids["queued"], ids["live"], ids["stale"]]
    assert await _job_log(clean_db) == ["canceled"]


async def test_the_sweeper_role_reads_active_solves_only_and_writes_nothing(
    alice: Caller, clean_db: SqlAdmin, service_db: Database
) -> None:
    scenario_id = await new_scenario(alice, {"stops": []})
    recorded = await alice.call("POST", f"/scenarios/{scenario_id}/solutions", {"status": "succeeded"})
    assert recorded.status_code == 201
    async with service_db.as_sweeper() as conn:
        assert await conn.fetchval("SELECT count(*) FROM solutions") == 0  # finished: not its business
    for forbidden in (
        "SELECT payload FROM solutions",
        "SELECT count(*) FROM scenarios",
        "SELECT count(*) FROM users",
        "SELECT payload FROM pgqueuer",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with service_db.as_sweeper() as conn:
                await conn.fetch(forbidden)
    for write in ("DELETE FROM pgqueuer", "UPDATE solutions SET reason = 'x'"):
        with pytest.raises(asyncpg.PostgresError, match=r"read-only|permission denied"):
            async with service_db.as_sweeper() as conn:
                await conn.execute(write)


async def test_a_lost_queue_connection_is_back_while_the_solve_runs_and_the_solve_runs_once(
    alice: Caller, workers: Workers, clean_db: SqlAdmin
) -> None:
    """The worker running S loses its queue connection (pg_terminate_backend) mid-solve, with a
    second worker idle beside it: its heartbeats go on without that connection, it reconnects
    while S still runs, S is never started a second time, and its job is closed as successful."""
    scenario_id = await new_scenario(alice, benchmark_request("RC208.vrp"))
    async with workers("a") as a:
        solution_id = await _queue(alice, scenario_id, time_limit_s=FROZEN_SOLVE_LIMIT_S)
        await eventually(lambda: _has_feasible(alice, solution_id), timeout=60)
        solve = await a.running_solve()
        solve.suspend()  # S runs, however long the reconnect takes
        try:
            before = await _worker_backends(clean_db)
            assert len(before) == 1
            async with workers("b") as b:
                assert len(await _worker_backends(clean_db)) == 2
                async with clean_db.transaction() as session:
                    await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": before[0]})

                async def reconnected() -> bool:
                    backends = await _worker_backends(clean_db)
                    return len(backends) == 2 and before[0] not in backends

                await eventually(reconnected, timeout=30)
                assert (await solution(alice, solution_id))["status"] == "running"  # reconnected meanwhile
                solve.resume()
                done = await until_status(alice, solution_id, "succeeded", "failed", "cancelled", timeout=60)
                await eventually(lambda: _queue_is_empty(clean_db), timeout=30)
        finally:
            _thaw(solve)
    assert done["status"] == "succeeded", done
    assert (await _solve_row(clean_db, alice.user_id, solution_id))["attempts"] == 1
    assert f"solving {solution_id}" not in b.log()
    assert await _job_log(clean_db) == ["queued", "picked", "successful"]
    assert "Traceback" not in a.log()


async def _worker_backends(db: SqlAdmin) -> list[int]:
    async with db.transaction() as session:
        rows = await session.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'routebook-worker' "
                "AND datname = current_database() ORDER BY pid"
            )
        )
        return [row[0] for row in rows]


async def test_a_worker_whose_lease_was_lost_stops_its_run_and_writes_nothing(
    alice: Caller, workers: Workers, clean_db: SqlAdmin
) -> None:
    """A worker frozen (SIGSTOP) past its lease: another worker starts the solve again. Thawed, the
    first learns from its next heartbeat or write that the solve is no longer its own, stops its
    run and writes nothing; the second's run is the one result. (The first's solve process is
    frozen with it: thawed, it is past its time and hands its plan to a worker that must not write it.)"""
    scenario_id = await new_scenario(alice, benchmark_request("RC208.vrp"))
    async with workers("a") as a:
        solution_id = await _queue(alice, scenario_id, time_limit_s=FROZEN_SOLVE_LIMIT_S)
        await eventually(lambda: _has_feasible(alice, solution_id), timeout=60)
        solve = await a.running_solve()
        solve.suspend()
        a.signal(signal.SIGSTOP)
        try:
            async with workers("b") as b:

                async def taken_over() -> bool:
                    return (await _solve_row(clean_db, alice.user_id, solution_id))["attempts"] == 2

                await eventually(taken_over, timeout=60)
                a.signal(signal.SIGCONT)
                solve.resume()
                await eventually(lambda: _says(a, "lease was lost", "started again elsewhere"), timeout=30)
                done = await until_status(alice, solution_id, "succeeded", "failed", "cancelled", timeout=60)
                await eventually(lambda: _queue_is_empty(clean_db), timeout=30)
        finally:
            a.signal(signal.SIGCONT)
            _thaw(solve)
    assert done["status"] == "succeeded", done
    assert f"solve {solution_id} succeeded" in b.log()
    assert f"solve {solution_id} succeeded" not in a.log()
    assert (await _job_log(clean_db)).count("successful") == 1
    assert "Traceback" not in a.log() + b.log()


def _thaw(process: psutil.Process) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        process.resume()


async def _says(worker: WorkerProcess, *phrases: str) -> bool:
    return any(phrase in worker.log() for phrase in phrases)


async def test_a_job_whose_result_was_written_is_closed_as_what_it_was(
    alice: Caller, workers: Workers, clean_db: SqlAdmin
) -> None:
    """An earlier run wrote its result, then its job could not be closed (its connection died).
    The next pick finds the solve finished: the job is closed as successful, not as cancelled, and
    the result is left as it was."""
    scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    solution_id = await _queue(alice, scenario_id, time_limit_s=1)
    async with clean_db.transaction() as session:
        await scope_rls_to(session, alice.user_id)
        await session.execute(
            text(
                "UPDATE solutions SET status = 'succeeded', attempts = 1, payload = '{\"distance\": 7}' "
                "WHERE id = :id"
            ),
            {"id": solution_id},
        )
    async with workers("a") as worker:
        await eventually(lambda: _queue_is_empty(clean_db), timeout=30)
    assert await _job_log(clean_db) == ["queued", "picked", "successful"]
    done = await solution(alice, solution_id)
    assert (done["status"], done["payload"]) == ("succeeded", {"distance": 7})
    assert f"solving {solution_id}" not in worker.log()
