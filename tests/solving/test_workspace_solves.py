"""Solving in a shared workspace: a member's solve runs and every member sees it, a viewer follows it
but cannot queue or cancel one, the workspace has its own active-solve limit, and a deleted
organisation's running solve stops and is erased."""

from __future__ import annotations

import copy
import uuid

from fastapi import FastAPI
from sqlalchemy import text

from service.deps import app_state
from service.solver.example import EXAMPLE_REQUEST
from service.workspaces import store
from service.workspaces.models import Role
from tests.conftest import AppFactory, client_for
from tests.kit.instances import benchmark_request
from tests.kit.sql import SqlAdmin
from tests.kit.worker import WorkerProcess
from tests.planning.conftest import Caller, sign_in
from tests.planning.test_workspace_isolation import acting_in
from tests.solving.conftest import new_scenario, until_status
from tests.solving.test_jobs import queue


async def shared_workspace(app: FastAPI, members: list[tuple[Caller, Role]]) -> uuid.UUID:
    async with app_state(app).db.privileged() as conn:
        workspace_id, _ = await store.organization_workspace(conn, "clerk", f"org_{uuid.uuid4().hex}")
        for caller, role in members:
            await store.set_membership(conn, workspace_id, caller.user_id, role, None)
    return workspace_id


async def test_a_members_solve_is_every_members_and_a_viewer_follows_it(
    app: FastAPI, alice: Caller, bob: Caller, worker: WorkerProcess
) -> None:
    dave = await sign_in(app, alice.http, "dave")
    workspace = await shared_workspace(app, [(alice, Role.ADMIN), (bob, Role.MEMBER), (dave, Role.VIEWER)])
    alice, bob, dave = (acting_in(caller, workspace) for caller in (alice, bob, dave))
    scenario = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    refused = await dave.call("POST", f"/scenarios/{scenario}/solve", {"time_limit_s": 1})
    assert refused.status_code == 403, refused.text
    solution_id = await queue(bob, scenario, time_limit_s=1)
    done = await until_status(alice, solution_id, "succeeded", "failed")
    assert done["status"] == "succeeded", done
    assert done["created_by"] == str(bob.user_id)
    assert (await dave.call("POST", f"/solutions/{solution_id}/cancel")).status_code == 403
    ticket = (await dave.call("POST", f"/solutions/{solution_id}/events/ticket")).json()["ticket"]
    stream = await dave.http.get(f"/api/v1/solutions/{solution_id}/events", params={"ticket": ticket})
    assert stream.status_code == 200 and "succeeded" in stream.text


async def test_a_workspace_has_its_own_active_solve_limit(
    app_factory: AppFactory, clean_db: SqlAdmin
) -> None:
    async with app_factory(solve_max_active_per_workspace=2) as app, client_for(app) as http:
        alice, bob = await sign_in(app, http, "alice"), await sign_in(app, http, "bob")
        workspace = await shared_workspace(app, [(alice, Role.ADMIN), (bob, Role.MEMBER)])
        in_alice, in_bob = acting_in(alice, workspace), acting_in(bob, workspace)
        scenario = await new_scenario(in_alice, copy.deepcopy(EXAMPLE_REQUEST))
        await queue(in_alice, scenario, time_limit_s=1)  # no worker: they stay pending
        await queue(in_bob, scenario, time_limit_s=1)
        limited = await in_bob.call("POST", f"/scenarios/{scenario}/solve", {"time_limit_s": 1})
        assert limited.status_code == 429, limited.text
        assert limited.headers["retry-after"]
        # The limit is the workspace's: bob's personal workspace still solves.
        own = await new_scenario(bob, copy.deepcopy(EXAMPLE_REQUEST))
        assert (await bob.call("POST", f"/scenarios/{own}/solve", {"time_limit_s": 1})).status_code == 202


async def test_a_deleted_organisations_running_solve_stops_and_is_erased(
    app: FastAPI, alice: Caller, bob: Caller, worker: WorkerProcess, clean_db: SqlAdmin
) -> None:
    org_id = f"org_{uuid.uuid4().hex}"
    async with app_state(app).db.privileged() as conn:
        workspace, _ = await store.organization_workspace(conn, "clerk", org_id)
        await store.set_membership(conn, workspace, alice.user_id, Role.ADMIN, None)
    member = acting_in(alice, workspace)
    solution_id = await queue(
        member, await new_scenario(member, benchmark_request("RC208.vrp")), time_limit_s=60
    )
    await until_status(member, solution_id, "running")
    async with app_state(app).db.privileged() as conn:
        assert await app_state(app).workspaces.delete_organization(conn, "clerk", org_id) == workspace
    async with clean_db.transaction() as session:
        assert (await session.execute(text("SELECT count(*) FROM solutions"))).scalar_one() == 0
    # The worker stopped the solve (its slot is free again): another workspace's jobs are taken up.
    scenario = await new_scenario(bob, copy.deepcopy(EXAMPLE_REQUEST))
    for queued in [await queue(bob, scenario, time_limit_s=1) for _ in range(2)]:
        assert (await until_status(bob, queued, "succeeded", "failed", timeout=60))["status"] == "succeeded"
    assert (await member.call("GET", "/sessions")).status_code == 404
    assert "Traceback" not in worker.log()
