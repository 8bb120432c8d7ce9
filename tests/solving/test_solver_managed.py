"""A solve owns its solution: clients record only `succeeded` or `failed`, and cannot change a solution
a solve is still filling; the status list the code uses is the one the table allows."""

from __future__ import annotations

import copy

import pytest
from sqlalchemy import text

from service.solver.example import EXAMPLE_REQUEST
from service.solver.outcome import SolutionStatus
from tests.kit.sql import SqlAdmin, scope_rls_to
from tests.kit.worker import WorkerProcess
from tests.planning.conftest import Caller
from tests.solving.conftest import new_scenario, solution, until_status


async def stored(db: SqlAdmin, caller: Caller, solution_id: str) -> tuple[object, ...]:
    async with db.transaction() as session:
        await scope_rls_to(session, caller.user_id)
        row = (
            await session.execute(
                text("SELECT status, payload::text, version, updated_at FROM solutions WHERE id = :id"),
                {"id": solution_id},
            )
        ).one()
    return tuple(row)


@pytest.mark.parametrize("status", ["pending", "running", "cancelled", "bogus", None])
async def test_a_client_records_only_succeeded_or_failed(
    alice: Caller, clean_db: SqlAdmin, status: str | None
) -> None:
    scenario_id = await new_scenario(alice, {"any": "document"})
    refused = await alice.call("POST", f"/scenarios/{scenario_id}/solutions", {"status": status})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["errors"][0]["loc"] == ["body", "status"]
    async with clean_db.transaction() as session:
        assert (await session.execute(text("SELECT count(*) FROM solutions"))).scalar_one() == 0
    recorded = await alice.call("POST", f"/scenarios/{scenario_id}/solutions", {"status": "failed"})
    assert recorded.status_code == 201
    patched = await alice.call("PATCH", f"/solutions/{recorded.json()['id']}", {"status": status})
    assert patched.status_code == 422
    assert (await solution(alice, recorded.json()["id"]))["status"] == "failed"


async def test_a_pending_solve_cannot_be_patched(alice: Caller, clean_db: SqlAdmin) -> None:
    # No worker runs here: the solve stays pending.
    scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    queued = await alice.call("POST", f"/scenarios/{scenario_id}/solve", {"time_limit_s": 1})
    assert queued.status_code == 202
    solution_id = queued.json()["id"]
    before = await stored(clean_db, alice, solution_id)
    for body in ({"status": "succeeded"}, {"payload": {"forged": True}}, {"status": "failed", "payload": {}}):
        for headers in ({}, {"If-Match": '"1"'}, {"If-Match": '"99"'}):
            patched = await alice.call("PATCH", f"/solutions/{solution_id}", body, headers=headers)
            assert patched.status_code == 409, (body, headers, patched.text)
            assert patched.headers["content-type"] == "application/problem+json"
    assert await stored(clean_db, alice, solution_id) == before


async def test_a_running_solve_cannot_be_patched_and_ends_as_its_solve_says(
    alice: Caller, clean_db: SqlAdmin, worker: WorkerProcess
) -> None:
    scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    queued = await alice.call("POST", f"/scenarios/{scenario_id}/solve", {"time_limit_s": 60})
    solution_id = queued.json()["id"]
    await until_status(alice, solution_id, "running")
    patched = await alice.call(
        "PATCH", f"/solutions/{solution_id}", {"status": "failed", "payload": {"x": 1}}
    )
    assert patched.status_code == 409
    assert (await solution(alice, solution_id))["status"] == "running"
    assert (await alice.call("POST", f"/solutions/{solution_id}/cancel")).status_code == 202
    done = await until_status(alice, solution_id, "cancelled", "failed")
    assert done["payload"] != {"x": 1}
    # Once the solve has ended, its solution is the client's to annotate like any other.
    after = await alice.call("PATCH", f"/solutions/{solution_id}", {"payload": {"note": "kept"}})
    assert after.status_code == 200
    assert (await solution(alice, solution_id))["payload"] == {"note": "kept"}


async def test_the_status_enum_is_what_the_table_allows(clean_db: SqlAdmin) -> None:
    async with clean_db.transaction() as session:
        check = (
            await session.execute(
                text(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = 'solutions'::regclass AND conname = 'ck_solutions_status'"
                )
            )
        ).scalar_one()
    allowed = sorted(part.split("'")[1] for part in check.split("ARRAY[")[1].split(",") if "'" in part)
    assert allowed == sorted(SolutionStatus)
