"""Outbound webhooks in a shared workspace: its members share its endpoints, a solve's end reaches
every endpoint of the solution's workspace whoever ended it, a viewer reads but changes nothing, an
outsider finds nothing, and a deleted organisation's endpoints go with its data."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook

from service.core.db import Database
from service.core.errors import Forbidden, NotFound
from service.deps import app_state
from service.outbound.events import EventType
from service.outbound.repository import DeliveryRepository, OutboundRepository
from service.outbound.routes import new_secret
from service.solver.example import EXAMPLE_REQUEST
from service.workspaces import store
from service.workspaces.models import Role
from tests.kit.receiver import Receiver
from tests.kit.sql import SqlAdmin
from tests.kit.worker import WorkerProcess
from tests.outbound.conftest import EVENTS, cancelled_solve, deliveries, register, until_delivery
from tests.planning.conftest import Caller, sign_in
from tests.planning.test_workspace_isolation import acting_in
from tests.solving.conftest import new_scenario, until_status
from tests.solving.test_jobs import queue


async def organisation(app: FastAPI, members: list[tuple[Caller, Role]]) -> tuple[uuid.UUID, str]:
    """A provider organisation's workspace with `members`; its id and the organisation's."""
    org_id = f"org_{uuid.uuid4().hex}"
    async with app_state(app).db.privileged() as conn:
        workspace_id, _ = await store.organization_workspace(conn, "clerk", org_id)
        for caller, role in members:
            await store.set_membership(conn, workspace_id, caller.user_id, role, None)
    return workspace_id, org_id


async def endpoint_ids(caller: Caller) -> list[str]:
    response = await caller.call("GET", "/webhook-endpoints")
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def test_members_of_one_workspace_share_its_endpoints(
    app: FastAPI, alice: Caller, bob: Caller, receiver: Receiver
) -> None:
    workspace, _ = await organisation(app, [(alice, Role.ADMIN), (bob, Role.MEMBER)])
    in_alice, in_bob = acting_in(alice, workspace), acting_in(bob, workspace)
    by_bob = await register(in_bob, receiver.url("/bob"))
    by_alice = await register(in_alice, receiver.url("/alice"))
    assert await endpoint_ids(in_alice) == await endpoint_ids(in_bob) == [by_alice["id"], by_bob["id"]]
    listed = (await in_alice.call("GET", "/webhook-endpoints")).json()["items"]
    assert [item["created_by"] for item in listed] == [str(alice.user_id), str(bob.user_id)]
    # Each one's personal workspace has none of them.
    assert await endpoint_ids(alice) == await endpoint_ids(bob) == []
    # A member manages what another registered.
    rotated = await in_alice.call("POST", f"/webhook-endpoints/{by_bob['id']}/rotate-secret")
    assert rotated.status_code == 200 and rotated.json()["secret"] != by_bob["secret"]
    assert (await in_alice.call("DELETE", f"/webhook-endpoints/{by_bob['id']}")).status_code == 204
    assert await endpoint_ids(in_bob) == [by_alice["id"]]


async def test_a_solve_by_one_member_is_delivered_to_another_members_endpoint_and_not_to_personal_ones(
    app: FastAPI, alice: Caller, bob: Caller, worker: WorkerProcess, receiver: Receiver
) -> None:
    """Alice's solve in the organisation runs in a real worker, whose dispatcher sends it to the
    endpoint Bob registered there, signed with its secret; Alice's and Bob's personal endpoints
    hear nothing of it."""
    workspace, _ = await organisation(app, [(alice, Role.MEMBER), (bob, Role.MEMBER)])
    in_alice, in_bob = acting_in(alice, workspace), acting_in(bob, workspace)
    shared = await register(in_bob, receiver.url("/shared"), ["solution.succeeded"])
    personal = [await register(caller, receiver.url(f"/{caller.name}")) for caller in (alice, bob)]
    scenario = await new_scenario(in_alice, copy.deepcopy(EXAMPLE_REQUEST))
    solution_id = await queue(in_alice, scenario, time_limit_s=1)
    assert (await until_status(in_alice, solution_id, "succeeded", "failed"))["status"] == "succeeded"

    delivery = await until_delivery(in_bob, shared["id"], "succeeded", "failed")
    assert delivery["status"] == "succeeded", delivery["attempts"]
    [received] = receiver.received
    assert received.path == "/shared"
    payload: dict[str, Any] = Webhook(shared["secret"]).verify(received.body, received.headers)
    assert payload["data"]["solution_id"] == solution_id
    assert received.headers["webhook-id"] == delivery["id"]
    for caller, endpoint in zip((alice, bob), personal, strict=True):
        assert await deliveries(caller, endpoint["id"]) == []


async def test_a_member_cancelling_queues_to_the_solutions_workspace(
    app: FastAPI, alice: Caller, bob: Caller, receiver: Receiver
) -> None:
    """Bob cancels a solve in the organisation (as himself, under row-level security): the delivery
    goes to the organisation's endpoint Alice registered, not to Bob's own."""
    workspace, _ = await organisation(app, [(alice, Role.ADMIN), (bob, Role.MEMBER)])
    in_alice, in_bob = acting_in(alice, workspace), acting_in(bob, workspace)
    shared = await register(in_alice, receiver.url("/shared"))
    own = await register(bob, receiver.url("/bob"))
    solution_id = await cancelled_solve(in_bob)
    [delivery] = await deliveries(in_alice, shared["id"])
    assert delivery["type"] == "solution.failed" and delivery["solution_id"] == solution_id
    assert await deliveries(bob, own["id"]) == []
    # The workspace's members see the same delivery.
    assert await deliveries(in_bob, shared["id"]) == [delivery]


async def test_an_outsider_gets_404_on_every_route_with_the_workspaces_ids(
    app: FastAPI, alice: Caller, bob: Caller, receiver: Receiver
) -> None:
    workspace, _ = await organisation(app, [(alice, Role.ADMIN)])
    in_alice = acting_in(alice, workspace)
    endpoint = await register(in_alice, receiver.url())
    await cancelled_solve(in_alice)
    [delivery] = await deliveries(in_alice, endpoint["id"])
    base = f"/webhook-endpoints/{endpoint['id']}"
    routes: list[tuple[str, str, Any]] = [
        ("GET", "/webhook-endpoints", None),
        ("POST", "/webhook-endpoints", {"url": receiver.url("/bob"), "events": EVENTS}),
        ("DELETE", base, None),
        ("POST", f"{base}/rotate-secret", None),
        ("GET", f"{base}/deliveries", None),
        ("POST", f"{base}/deliveries/{delivery['id']}/replay", None),
    ]
    # Naming the workspace: not a member, so the workspace is as missing as a random one.
    for method, path, body in routes:
        foreign = await acting_in(bob, workspace).call(method, path, body)
        absent = await acting_in(bob, uuid.uuid4()).call(method, path, body)
        assert foreign.status_code == absent.status_code == 404, (method, path, foreign.text)
        assert foreign.headers["content-type"] == "application/problem+json"
        assert foreign.json() == absent.json()
    # In his own workspace, the organisation's ids are as missing as random ones.
    missing = f"/webhook-endpoints/{uuid.uuid4()}"
    for method, path, body in routes[2:]:
        foreign = await bob.call(method, path, body)
        absent = await bob.call(method, path.replace(base, missing), body)
        assert foreign.status_code == absent.status_code == 404, (method, path)
        assert foreign.json() == absent.json()
    # Nothing of the organisation's changed.
    [kept] = (await in_alice.call("GET", "/webhook-endpoints")).json()["items"]
    assert kept["id"] == endpoint["id"]
    assert await deliveries(in_alice, endpoint["id"]) == [delivery]


async def test_a_viewer_reads_endpoints_and_deliveries_but_changes_nothing(
    app: FastAPI, alice: Caller, receiver: Receiver, clean_db: SqlAdmin
) -> None:
    dave = await sign_in(app, alice.http, "dave")
    workspace, _ = await organisation(app, [(alice, Role.ADMIN), (dave, Role.VIEWER)])
    in_alice, as_viewer = acting_in(alice, workspace), acting_in(dave, workspace)
    endpoint = await register(in_alice, receiver.url())
    await cancelled_solve(in_alice)
    [delivery] = await deliveries(in_alice, endpoint["id"])

    assert await endpoint_ids(as_viewer) == [endpoint["id"]]
    listed = (await as_viewer.call("GET", "/webhook-endpoints")).json()["items"][0]
    assert "secret" not in listed
    assert await deliveries(as_viewer, endpoint["id"]) == [delivery]

    async def snapshot() -> list[tuple[Any, ...]]:
        async with clean_db.transaction() as session:
            await session.execute(
                text("SELECT set_config('app.workspace_id', :w, true)"), {"w": str(workspace)}
            )
            rows = await session.execute(
                text(
                    "SELECT e.id, e.secret, e.updated_at, d.id, d.status, d.updated_at FROM webhook_endpoints e "
                    "LEFT JOIN webhook_deliveries d ON d.endpoint_id = e.id ORDER BY e.id, d.id"
                )
            )
            return [tuple(row) for row in rows]

    before = await snapshot()
    base = f"/webhook-endpoints/{endpoint['id']}"
    for method, path, body in [
        ("POST", "/webhook-endpoints", {"url": receiver.url("/dave"), "events": EVENTS}),
        ("DELETE", base, None),
        ("POST", f"{base}/rotate-secret", None),
        ("POST", f"{base}/deliveries/{delivery['id']}/replay", None),
    ]:
        refused = await as_viewer.call(method, path, body)
        assert refused.status_code == 403, (method, path, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        assert "secret" not in refused.text
    assert await snapshot() == before


@pytest.mark.parametrize("role", [Role.MEMBER, Role.ADMIN])
async def test_members_and_admins_manage_endpoints(
    app: FastAPI, alice: Caller, bob: Caller, receiver: Receiver, role: Role
) -> None:
    workspace, _ = await organisation(app, [(alice, Role.ADMIN), (bob, role)])
    in_bob = acting_in(bob, workspace)
    endpoint = await register(in_bob, receiver.url())
    await cancelled_solve(in_bob)
    [delivery] = await deliveries(in_bob, endpoint["id"])
    base = f"/webhook-endpoints/{endpoint['id']}"
    assert (await in_bob.call("POST", f"{base}/rotate-secret")).status_code == 200
    assert (await in_bob.call("POST", f"{base}/deliveries/{delivery['id']}/replay")).status_code == 202
    assert (await in_bob.call("DELETE", base)).status_code == 204


async def test_a_deleted_organisations_endpoints_and_deliveries_are_erased(
    app: FastAPI, alice: Caller, receiver: Receiver, clean_db: SqlAdmin
) -> None:
    workspace, org_id = await organisation(app, [(alice, Role.ADMIN)])
    in_alice = acting_in(alice, workspace)
    endpoint = await register(in_alice, receiver.url("/org"))
    await cancelled_solve(in_alice)
    own = await register(alice, receiver.url("/own"))
    await cancelled_solve(alice)
    async with app_state(app).db.privileged() as conn:
        assert await app_state(app).workspaces.delete_organization(conn, "clerk", org_id) == workspace

    async def count(table: str, workspace_id: uuid.UUID) -> int:
        async with clean_db.transaction() as session:
            await session.execute(
                text("SELECT set_config('app.workspace_id', :w, true)"), {"w": str(workspace_id)}
            )
            return int(
                (
                    await session.execute(
                        text(f"SELECT count(*) FROM {table} WHERE workspace_id = :w"), {"w": workspace_id}
                    )
                ).scalar_one()
            )

    for table in ("webhook_endpoints", "webhook_deliveries", "webhook_attempts"):
        assert await count(table, workspace) == 0, table
    assert (await in_alice.call("GET", f"/webhook-endpoints/{endpoint['id']}/deliveries")).status_code == 404
    # Her personal workspace's endpoint and its delivery are hers still.
    assert await count("webhook_endpoints", alice.user_id) == 1
    assert len(await deliveries(alice, own["id"])) == 1


async def test_a_deleted_users_personal_endpoints_go_and_those_they_registered_for_an_organisation_stay(
    app: FastAPI, alice: Caller, bob: Caller, receiver: Receiver, clean_db: SqlAdmin
) -> None:
    workspace, _ = await organisation(app, [(alice, Role.ADMIN), (bob, Role.MEMBER)])
    in_alice = acting_in(alice, workspace)
    shared = await register(acting_in(bob, workspace), receiver.url("/shared"))
    await register(bob, receiver.url("/own"))
    async with app_state(app).db.privileged() as conn:
        await app_state(app).identity.tombstone(conn, "dev", "user-bob")
    async with clean_db.transaction() as session:
        await session.execute(
            text("SELECT set_config('app.workspace_id', :w, true)"), {"w": str(bob.user_id)}
        )
        own = await session.execute(
            text("SELECT count(*) FROM webhook_endpoints WHERE workspace_id = :w"), {"w": bob.user_id}
        )
        assert own.scalar_one() == 0
    # The organisation's endpoint is the organisation's: still listed, still sent to.
    assert await endpoint_ids(in_alice) == [shared["id"]]
    await cancelled_solve(in_alice)
    assert len(await deliveries(in_alice, shared["id"])) == 1


async def test_row_level_security_holds_beneath_the_routes(
    app: FastAPI, alice: Caller, bob: Caller, receiver: Receiver, service_db: Database
) -> None:
    """Should a route forget its check, the policies still refuse: a viewer's insert or update is
    refused, and an outsider naming the workspace sees and changes nothing."""
    dave = await sign_in(app, alice.http, "dave")
    workspace, _ = await organisation(app, [(alice, Role.ADMIN), (dave, Role.VIEWER)])
    endpoint = await register(acting_in(alice, workspace), receiver.url())
    endpoint_id = uuid.UUID(endpoint["id"])

    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with service_db.as_member(workspace, dave.user_id) as conn:
            await OutboundRepository(conn, workspace=workspace, user=dave.user_id).create_endpoint(
                receiver.url("/dave"), EVENTS, new_secret(), limit=20
            )
    for caller in (dave, bob):
        async with service_db.as_member(workspace, caller.user_id) as conn:
            repo = OutboundRepository(conn, workspace=workspace, user=caller.user_id)
            with pytest.raises(NotFound):
                await repo.rotate_secret(endpoint_id, new_secret())
            with pytest.raises(NotFound):
                await repo.delete_endpoint(endpoint_id)
    async with service_db.as_member(workspace, bob.user_id) as conn:
        repo = OutboundRepository(conn, workspace=workspace, user=bob.user_id)
        assert await repo.list_endpoints(20, None) == []
        # Nor does an outsider queue deliveries to the workspace's endpoints: he sees none of them.
        await DeliveryRepository(conn, workspace=workspace).enqueue(
            EventType.SOLUTION_FAILED, uuid.uuid4(), "{}"
        )
    # A viewer sees them, but may not queue one: the policy refuses (a 403 when it reaches a route).
    with pytest.raises(Forbidden):
        async with service_db.as_member(workspace, dave.user_id) as conn:
            await DeliveryRepository(conn, workspace=workspace).enqueue(
                EventType.SOLUTION_FAILED, uuid.uuid4(), "{}"
            )
    [kept] = (await acting_in(alice, workspace).call("GET", "/webhook-endpoints")).json()["items"]
    assert kept["updated_at"] == endpoint["updated_at"]
    assert await deliveries(acting_in(alice, workspace), endpoint["id"]) == []
