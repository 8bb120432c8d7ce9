"""An organisation deleted at the provider: the solve running in its workspace stops, and its
workspace's data is erased, as the signed webhook is applied (the twin of a user's deletion)."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator

import pytest
import respx
from sqlalchemy import text

from service.solver.example import EXAMPLE_REQUEST
from tests.conftest import AppFactory, client_for
from tests.kit import MockProvider, Org, merge_overrides
from tests.kit.instances import benchmark_request
from tests.kit.sql import SqlAdmin
from tests.kit.waiting import eventually
from tests.kit.worker import WorkerProcess
from tests.planning.conftest import Caller
from tests.solving.conftest import new_scenario, solution, until_status
from tests.webhooks.conftest import CLERK, WEBHOOK_SETTINGS, clerk_signed
from tests.webhooks.test_workspace_hooks import clerk_org_event, workspace_row

ORG = "org_2solvingTeam"


@pytest.fixture
def clerk() -> Iterator[MockProvider]:
    provider = MockProvider.clerk()
    with respx.mock(assert_all_called=False) as router:
        provider.mock(router)
        yield provider


async def queue(caller: Caller, scenario_id: str, **options: object) -> str:
    response = await caller.call("POST", f"/scenarios/{scenario_id}/solve", options)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def test_an_organisation_deleted_by_webhook_stops_its_running_solve_and_erases_it(
    app_factory: AppFactory, clerk: MockProvider, worker: WorkerProcess, clean_db: SqlAdmin
) -> None:
    async with app_factory(**merge_overrides(clerk, **WEBHOOK_SETTINGS)) as app, client_for(app) as http:

        async def caller(name: str, org: Org | None) -> Caller:
            headers = {"Authorization": f"Bearer {clerk.token(f'user_{name}', org=org, expires_in=600)}"}
            me = await http.get("/api/v1/users/me", headers=headers)
            assert me.status_code == 200, me.text
            return Caller(name, uuid.UUID(me.json()["id"]), http, headers)

        member = await caller("member", Org(id=ORG, role="member"))
        solution_id = await queue(
            member, await new_scenario(member, benchmark_request("RC208.vrp")), time_limit_s=60
        )
        await until_status(member, solution_id, "running")
        workspace = await workspace_row(clean_db, "clerk", ORG)
        assert workspace is not None

        deleted = clerk_org_event("organization.deleted", ORG, at=time.time_ns() // 1_000_000)
        body, headers = clerk_signed(deleted)
        response = await http.post(CLERK, content=body, headers=headers)
        assert response.status_code == 204, response.text

        assert (await member.call("GET", f"/solutions/{solution_id}")).status_code == 404
        async with clean_db.transaction() as session:
            await session.execute(
                text("SELECT set_config('app.workspace_id', :w, true)"), {"w": str(workspace.id)}
            )
            for table in ("sessions", "scenarios", "solutions"):
                count = await session.execute(
                    text(f"SELECT count(*) FROM {table} WHERE workspace_id = :w"), {"w": workspace.id}
                )
                assert count.scalar_one() == 0, table

        # The worker stopped the solve: both its slots run someone else's solves at the same time.
        other = await caller("other", None)
        jobs = [
            await queue(other, await new_scenario(other, copy.deepcopy(EXAMPLE_REQUEST)), time_limit_s=30)
            for _ in range(2)
        ]

        async def both_running() -> bool:
            statuses = [(await solution(other, job))["status"] for job in jobs]
            return statuses == ["running", "running"]

        await eventually(both_running, timeout=60, every=0.1)
        for job in jobs:
            assert (await other.call("POST", f"/solutions/{job}/cancel")).status_code == 202
    assert "Traceback" not in worker.log()
