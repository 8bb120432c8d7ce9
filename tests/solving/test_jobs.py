"""Solve jobs end to end: the API queues, a real worker process solves with PyVRP, the result,
progress and cancellation come back — scoped to their owner, within the limits."""

from __future__ import annotations

import asyncio
import copy
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from service.deps import app_state
from service.solver.example import EXAMPLE_REQUEST
from tests.conftest import AppFactory, client_for
from tests.kit.checker import check_solution
from tests.kit.instances import benchmark_request
from tests.kit.sql import SqlAdmin
from tests.kit.waiting import eventually
from tests.kit.worker import WorkerProcess, solve_worker
from tests.planning.conftest import Caller, sign_in
from tests.solving.conftest import (
    new_scenario,
    parse_events,
    solution,
    until_status,
)


def matrices(request: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    distances = np.array(request["matrix"]["distances"])
    return distances, np.array(request["matrix"].get("durations", distances))


async def queue(caller: Caller, scenario_id: str, **options: Any) -> str:
    response = await caller.call("POST", f"/scenarios/{scenario_id}/solve", options)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert response.headers["location"] == f"/api/v1/solutions/{body['id']}"
    return str(body["id"])


async def test_a_benchmark_is_solved_by_the_worker_and_streamed(alice: Caller, worker: WorkerProcess) -> None:
    request = benchmark_request("E-n22-k4.vrp")
    scenario_id = await new_scenario(alice, request)
    solution_id = await queue(alice, scenario_id, time_limit_s=2, seed=3)

    stream = await alice.call("GET", f"/solutions/{solution_id}/events", timeout=60)
    assert stream.status_code == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = parse_events(stream.text)
    progress = [e for e in events if e.event == "progress"]
    assert events[-1].event == "status" and events[-1].data == {"status": "succeeded"}
    assert len(progress) >= 2  # at least one a second over a 2 s solve
    ids = [int(e.id or 0) for e in progress]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {"elapsed_s", "iterations", "best_distance", "feasible"} <= set(progress[-1].data)

    done = await solution(alice, solution_id)
    payload = done["payload"]
    assert done["status"] == "succeeded" and done["reason"] is None
    check_solution(request, *matrices(request), payload)
    assert payload["distance"] <= 375 * 1.01
    assert payload["scenario_version"] == "1"
    assert payload["solver"]["name"] == "pyvrp"
    assert (payload["solver"]["seed"], payload["solver"]["time_limit_s"]) == (3, 2)


async def test_a_queued_snapshot_is_solved_after_the_scenario_changed(
    alice: Caller, worker: WorkerProcess, clean_db: SqlAdmin
) -> None:
    scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    # The snapshot is taken in the queueing transaction: an edit right after (before or while the
    # worker runs it) does not reach the solve.
    solution_id = await queue(alice, scenario_id, time_limit_s=1)
    assert (
        await alice.call("PATCH", f"/scenarios/{scenario_id}", {"request": {"depots": []}})
    ).status_code == 200
    done = await until_status(alice, solution_id, "succeeded", "failed")
    assert done["status"] == "succeeded", done
    assert done["payload"]["scenario_version"] == "1"
    stops = {stop for route in done["payload"]["routes"] for stop in route["stops"]}
    unassigned = {entry["id"] for entry in done["payload"]["unassigned"]}
    assert stops | unassigned == {stop["id"] for stop in EXAMPLE_REQUEST["stops"]}


@pytest.mark.parametrize(
    ("mutate", "pointer", "error_type"),
    [
        (lambda r: r["vehicle_types"][0].update(depot="nowhere"), "/vehicle_types/0/depot", None),
        (lambda r: r["stops"][1].update(time_window=[500, 100]), "/stops/1/time_window", None),
        (lambda r: r["stops"][0].update(location={"x": 1, "y": 2}), "/stops/0/location", None),
        (lambda r: r.pop("depots"), "/depots", None),
    ],
)
async def test_an_unsolvable_request_is_422_with_pointers_and_queues_nothing(
    alice: Caller, clean_db: SqlAdmin, mutate: Any, pointer: str, error_type: str | None
) -> None:
    request = copy.deepcopy(EXAMPLE_REQUEST)
    mutate(request)
    scenario_id = await new_scenario(alice, request)
    response = await alice.call("POST", f"/scenarios/{scenario_id}/solve", {})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert pointer in [error["pointer"] for error in errors], errors
    assert all(error["loc"][:2] == ["scenario", "request"] for error in errors)
    async with clean_db.transaction() as session:
        assert (await session.execute(text("SELECT count(*) FROM pgqueuer"))).scalar_one() == 0
        assert (await session.execute(text("SELECT count(*) FROM solutions WHERE true"))).scalar_one() == 0


async def test_a_plain_json_scenario_is_not_solvable(alice: Caller) -> None:
    scenario_id = await new_scenario(alice, {"stops": [], "anything": True})
    response = await alice.call("POST", f"/scenarios/{scenario_id}/solve")
    assert response.status_code == 422


@pytest.mark.parametrize("options", [{"time_limit_s": 0}, {"time_limit_s": 301}, {"seed": -1}, {"extra": 1}])
async def test_bad_solve_options_are_422(alice: Caller, options: dict[str, Any]) -> None:
    scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    response = await alice.call("POST", f"/scenarios/{scenario_id}/solve", options)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"][0] == "body"


async def test_too_many_active_solves_is_429_with_retry_after(app_factory: AppFactory) -> None:
    async with app_factory(solve_max_active_per_user=2) as app, client_for(app) as http:
        alice = await sign_in(app, http, "alice")
        scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
        await queue(alice, scenario_id)
        await queue(alice, scenario_id)
        third = await alice.call("POST", f"/scenarios/{scenario_id}/solve", {})
        assert third.status_code == 429, third.text
        assert third.headers["retry-after"].isdigit()
        assert third.headers["content-type"] == "application/problem+json"
        # Another user is not limited by alice's solves.
        bob = await sign_in(app, http, "bob")
        assert (
            await bob.call("POST", f"/scenarios/{await new_scenario(bob, EXAMPLE_REQUEST)}/solve")
        ).status_code == 202


async def test_concurrent_solve_requests_respect_the_limit(app_factory: AppFactory) -> None:
    async with app_factory(solve_max_active_per_user=3) as app, client_for(app) as http:
        alice = await sign_in(app, http, "alice")
        scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
        responses = await asyncio.gather(
            *(alice.call("POST", f"/scenarios/{scenario_id}/solve", {}) for _ in range(8))
        )
    assert sorted(r.status_code for r in responses) == [202] * 3 + [429] * 5


async def test_another_users_solutions_are_404_everywhere(alice: Caller, bob: Caller) -> None:
    scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    solution_id = await queue(alice, scenario_id)
    missing = str(uuid.uuid4())
    for path, method in (
        (f"/scenarios/{scenario_id}/solve", "POST"),
        (f"/solutions/{solution_id}/cancel", "POST"),
        (f"/solutions/{solution_id}/events", "GET"),
        (f"/solutions/{solution_id}/events/ticket", "POST"),
        (f"/solutions/{solution_id}", "GET"),
    ):
        theirs = await bob.call(method, path)
        nobody = await alice.call(method, path.replace(solution_id, missing).replace(scenario_id, missing))
        assert theirs.status_code == nobody.status_code == 404, (path, theirs.text)
        assert theirs.json()["detail"] == nobody.json()["detail"]
    assert (await solution(alice, solution_id))["status"] == "pending"  # bob's cancel changed nothing


async def test_cancelling_a_pending_solve_ends_it_failed_and_a_finished_one_is_409(alice: Caller) -> None:
    scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    solution_id = await queue(alice, scenario_id)
    cancelled = await alice.call("POST", f"/solutions/{solution_id}/cancel")
    assert cancelled.status_code == 202
    body = await solution(alice, solution_id)
    assert body["status"] == "failed" and body["reason"] == "cancelled before a solution was found"
    again = await alice.call("POST", f"/solutions/{solution_id}/cancel")
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    events = parse_events((await alice.call("GET", f"/solutions/{solution_id}/events")).text)
    assert [e.event for e in events] == ["status"] and events[0].data["status"] == "failed"


async def test_cancel_mid_solve_keeps_a_feasible_best_so_far(alice: Caller, worker: WorkerProcess) -> None:
    request = benchmark_request("RC208.vrp")
    solution_id = await queue(alice, await new_scenario(alice, request), time_limit_s=60)
    running = await until_status(alice, solution_id, "running")
    assert running["status"] == "running"

    await eventually(lambda: _has_feasible(alice, solution_id), timeout=60)
    asked = time.monotonic()
    assert (await alice.call("POST", f"/solutions/{solution_id}/cancel")).status_code == 202
    done = await until_status(alice, solution_id, "cancelled", "succeeded", "failed", timeout=30)
    stopped_after = time.monotonic() - asked
    assert done["status"] == "cancelled", done
    assert done["payload"]["feasible"] is True
    check_solution(request, *matrices(request), done["payload"])
    assert done["payload"]["solver"]["runtime_s"] < 60
    print(f"cancel → cancelled in {stopped_after:.2f} s")  # quoted in the closing note
    assert (await alice.call("POST", f"/solutions/{solution_id}/cancel")).status_code == 409


async def test_a_worker_killed_mid_solve_leaves_no_solve_running(
    alice: Caller, migrated_url: str, tmp_path: Path
) -> None:
    """The lease is the queue's heartbeat: a job whose worker went silent is run again elsewhere."""
    scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    async with solve_worker(migrated_url, tmp_path / "a", heartbeat_timeout_s=2) as first:
        solution_id = await queue(alice, scenario_id, time_limit_s=4)
        await until_status(alice, solution_id, "running")
        first.signal(signal.SIGKILL)
        await first.wait_exit()
    async with solve_worker(migrated_url, tmp_path / "b", heartbeat_timeout_s=2):
        done = await until_status(alice, solution_id, "succeeded", "failed", timeout=60)
    assert done["status"] == "succeeded", done


async def test_a_worker_stopped_with_sigterm_hands_its_solve_back(
    alice: Caller, migrated_url: str, tmp_path: Path, clean_db: SqlAdmin
) -> None:
    scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    async with solve_worker(migrated_url, tmp_path / "a") as first:
        solution_id = await queue(alice, scenario_id, time_limit_s=30)
        await until_status(alice, solution_id, "running")
        first.signal(signal.SIGTERM)
        assert await first.wait_exit() == 0
    # It did not sit out the 30 s solve: the solve is back in the queue, unfinished.
    assert (await solution(alice, solution_id))["status"] == "pending"
    async with clean_db.transaction() as session:
        status = (await session.execute(text("SELECT status::text FROM pgqueuer"))).scalar_one()
    assert status == "queued"
    async with solve_worker(migrated_url, tmp_path / "b"):
        # The next worker takes it at once (no lease to wait out); once it has a solution, cancel to
        # keep the test short.
        await until_status(alice, solution_id, "running", timeout=30)
        await eventually(lambda: _has_feasible(alice, solution_id), timeout=30)
        await alice.call("POST", f"/solutions/{solution_id}/cancel")
        done = await until_status(alice, solution_id, "cancelled", "failed", timeout=30)
    assert done["status"] == "cancelled"


async def _has_feasible(caller: Caller, solution_id: str) -> bool:
    progress = (await solution(caller, solution_id))["progress"]
    return bool(progress and progress["feasible"])


async def test_events_stream_from_another_instance_and_resume(
    app_factory: AppFactory, worker: WorkerProcess
) -> None:
    async with app_factory() as a, app_factory() as b, client_for(a) as http_a, client_for(b) as http_b:
        alice_a = await sign_in(a, http_a, "alice")
        alice_b = Caller("alice", alice_a.user_id, http_b, alice_a.headers)
        solution_id = await queue(
            alice_a, await new_scenario(alice_a, copy.deepcopy(EXAMPLE_REQUEST)), time_limit_s=2
        )
        events = parse_events(
            (await alice_b.call("GET", f"/solutions/{solution_id}/events", timeout=60)).text
        )
        assert events[-1].data["status"] == "succeeded"
        progress = [e for e in events if e.event == "progress"]
        assert progress
        resumed = await alice_b.call(
            "GET", f"/solutions/{solution_id}/events", headers={"Last-Event-ID": progress[-1].id or ""}
        )
    again = parse_events(resumed.text)
    assert [e.event for e in again] == ["status"]  # nothing already seen is sent twice


async def test_a_ticket_opens_one_stream_once(alice: Caller, bob: Caller) -> None:
    solution_id = await queue(alice, await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST)))
    await alice.call("POST", f"/solutions/{solution_id}/cancel")  # final: the stream ends at once
    issued = await alice.call("POST", f"/solutions/{solution_id}/events/ticket")
    assert issued.status_code == 200 and issued.json()["expires_in"] <= 60
    ticket = issued.json()["ticket"]
    path = f"/api/v1/solutions/{solution_id}/events"
    anonymous = alice.http  # no Authorization header on these requests
    first = await anonymous.get(path, params={"ticket": ticket})
    assert first.status_code == 200 and parse_events(first.text)[-1].event == "status"
    reused = await anonymous.get(path, params={"ticket": ticket})
    assert reused.status_code == 401
    other = await alice.call("POST", f"/solutions/{solution_id}/events/ticket")
    wrong_solution = await anonymous.get(
        f"/api/v1/solutions/{uuid.uuid4()}/events", params={"ticket": other.json()["ticket"]}
    )
    assert wrong_solution.status_code == 401
    assert (await anonymous.get(path)).status_code == 401
    assert (await anonymous.get(path, params={"ticket": "forged"})).status_code == 401


async def test_a_solve_pyvrp_refuses_fails_with_a_short_reason(alice: Caller, worker: WorkerProcess) -> None:
    request = copy.deepcopy(EXAMPLE_REQUEST)
    for depot in request["depots"]:
        depot["time_window"] = [0, 100]
    for vehicle in request["vehicle_types"]:
        vehicle["shift"] = [50_000, 60_000]  # never overlaps its depot's hours
    solution_id = await queue(alice, await new_scenario(alice, request), time_limit_s=1)
    done = await until_status(alice, solution_id, "succeeded", "failed")
    assert done["status"] == "failed", done
    assert done["reason"] and len(done["reason"]) <= 200 and "Traceback" not in done["reason"]
    assert done["payload"] is None


async def test_the_deletion_webhook_stops_the_users_solve_and_erases_it(
    app: FastAPI, alice: Caller, worker: WorkerProcess, clean_db: SqlAdmin
) -> None:
    solution_id = await queue(
        alice, await new_scenario(alice, benchmark_request("RC208.vrp")), time_limit_s=60
    )
    await until_status(alice, solution_id, "running")
    # The identity service's tombstone, as the webhook applies it.
    async with app_state(app).db.privileged() as conn:
        await app_state(app).identity.tombstone(conn, "dev", "user-alice")
    async with clean_db.transaction() as session:
        assert (await session.execute(text("SELECT count(*) FROM solutions"))).scalar_one() == 0
    # The worker stopped the solve (its slot is free again): a job of another user is taken up.
    bob = await sign_in(app, alice.http, "bob")
    other = await queue(bob, await new_scenario(bob, copy.deepcopy(EXAMPLE_REQUEST)), time_limit_s=1)
    second = await queue(bob, await new_scenario(bob, copy.deepcopy(EXAMPLE_REQUEST)), time_limit_s=1)
    for queued in (other, second):
        assert (await until_status(bob, queued, "succeeded", "failed", timeout=60))["status"] == "succeeded"
    assert "Traceback" not in worker.log()
