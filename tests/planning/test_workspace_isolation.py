"""The isolation matrix one level up: a workspace's members share its planning data, and nobody else
reaches it — not with its ids, not by naming it in `Routebook-Workspace`, not by setting
`app.workspace_id` in a raw transaction. A viewer reads and follows, and every write is 403 with
nothing changed; row-level security refuses the viewer's insert underneath the route."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from service.core.db import Database, new_id
from service.deps import app_state
from service.workspaces import store
from service.workspaces.models import Role
from tests.conftest import AppFactory, client_for
from tests.kit.sql import SqlAdmin
from tests.kit.waiting import eventually
from tests.planning.conftest import Caller, sign_in
from tests.planning.test_isolation import PLAN_VIEWS, ROUTES, build_tree, comparable, send
from tests.planning.test_statements import record

WORKSPACE_HEADER = "Routebook-Workspace"


@dataclass(frozen=True)
class Team:
    workspace: uuid.UUID
    alice: Caller  # admin
    bob: Caller  # member
    dave: Caller  # viewer
    carol: Caller  # outsider


def acting_in(caller: Caller, workspace: uuid.UUID | str) -> Caller:
    return replace(caller, headers={**caller.headers, WORKSPACE_HEADER: str(workspace)})


async def make_workspace(db: Database, members: dict[uuid.UUID, Role | None]) -> uuid.UUID:
    async with db.privileged() as conn:
        workspace_id, _ = await store.organization_workspace(conn, "clerk", f"org_{new_id()}", name="Acme")
        for user_id, role in members.items():
            await store.set_membership(conn, workspace_id, user_id, role, None)
    return workspace_id


@pytest.fixture
async def team(app: FastAPI, alice: Caller, bob: Caller) -> Team:
    dave, carol = await sign_in(app, alice.http, "dave"), await sign_in(app, alice.http, "carol")
    workspace = await make_workspace(
        app_state(app).db, {alice.user_id: Role.ADMIN, bob.user_id: Role.MEMBER, dave.user_id: Role.VIEWER}
    )
    return Team(
        workspace,
        acting_in(alice, workspace),
        acting_in(bob, workspace),
        acting_in(dave, workspace),
        carol,
    )


async def workspace_snapshot(db: SqlAdmin, workspace: uuid.UUID) -> dict[str, list[tuple[Any, ...]]]:
    """Every planning row of a workspace, as the login role sees it."""
    snapshot: dict[str, list[tuple[Any, ...]]] = {}
    async with db.transaction() as session:
        await session.execute(text("SELECT set_config('app.workspace_id', :w, true)"), {"w": str(workspace)})
        for table in ("sessions", "scenarios", "solutions"):
            rows = await session.execute(
                text(
                    f"SELECT id, user_id, version, updated_at FROM {table} WHERE workspace_id = :w ORDER BY id"
                ),
                {"w": workspace},
            )
            snapshot[table] = [tuple(row) for row in rows.all()]
    return snapshot


async def test_members_read_and_edit_each_others_sessions_scenarios_and_solutions(team: Team) -> None:
    tree = await build_tree(team.alice)
    for kind in ("session", "scenario", "solution"):
        read = await team.bob.call("GET", f"/{kind}s/{tree[kind]}")
        assert read.status_code == 200, read.text
        assert read.json()["created_by"] == str(team.alice.user_id)
    renamed = await team.bob.call("PATCH", f"/sessions/{tree['session']}", {"name": "Bob's now"})
    assert renamed.status_code == 200 and renamed.json()["created_by"] == str(team.alice.user_id)
    edited = await team.bob.call("PATCH", f"/scenarios/{tree['scenario']}", {"request": {"stops": [2]}})
    assert edited.status_code == 200, edited.text
    patched = await team.bob.call("PATCH", f"/solutions/{tree['solution']}", {"status": "failed"})
    assert patched.status_code == 200, patched.text
    added = await team.bob.call(
        "POST", f"/sessions/{tree['session']}/scenarios", {"name": "b", "request": {}}
    )
    assert added.status_code == 201 and added.json()["created_by"] == str(team.bob.user_id)
    listed = await team.alice.call("GET", f"/sessions/{tree['session']}/scenarios")
    assert {item["created_by"] for item in listed.json()["items"]} == {
        str(team.alice.user_id),
        str(team.bob.user_id),
    }
    assert (await team.alice.call("GET", f"/scenarios/{tree['scenario']}")).json()["request"] == {
        "stops": [2]
    }
    # The workspace's rows are not in either member's personal workspace.
    personal = replace(team.alice, headers={"Authorization": team.alice.headers["Authorization"]})
    assert (await personal.call("GET", "/sessions")).json()["items"] == []
    assert (await personal.call("GET", f"/sessions/{tree['session']}")).status_code == 404


async def test_an_outsider_gets_404_on_every_route_with_the_workspaces_ids(
    team: Team, clean_db: SqlAdmin
) -> None:
    tree = await build_tree(team.alice)
    before = await workspace_snapshot(clean_db, team.workspace)
    in_foreign = acting_in(team.carol, team.workspace)
    for route in ROUTES + PLAN_VIEWS:
        missing = await send(team.carol, route, new_id())
        assert missing.status_code == 404, (route, missing.text)
        assert comparable(await send(team.carol, route, tree[route.kind])) == comparable(missing), route
        # Naming the workspace in the header opens nothing: the same 404 as a missing id.
        assert comparable(await send(in_foreign, route, tree[route.kind])) == comparable(missing), route
    for method, path, body in (("GET", "/sessions", None), ("POST", "/sessions", {"name": "planted"})):
        foreign = await in_foreign.call(method, path, body)
        assert foreign.status_code == 404, foreign.text
        assert foreign.headers["content-type"] == "application/problem+json"
    assert await workspace_snapshot(clean_db, team.workspace) == before
    # Neither does a header that is not a workspace id, nor a workspace that does not exist.
    for bad in ("not-a-uuid", str(new_id()), "", f"{team.workspace}{'0' * 4000}"):
        assert (await acting_in(team.alice, bad).call("GET", "/sessions")).status_code == 404, bad
        assert (await acting_in(team.alice, bad).call("GET", "/users/me")).status_code == 404, bad


async def test_a_viewer_reads_and_every_write_and_solve_is_403(team: Team, clean_db: SqlAdmin) -> None:
    tree = await build_tree(team.alice)
    before = await workspace_snapshot(clean_db, team.workspace)
    writes = [route for route in ROUTES if route.method != "GET"]
    for route in ROUTES:
        response = await send(team.dave, route, tree[route.kind])
        if route in writes:
            assert response.status_code == 403, (route, response.text)
            assert response.headers["content-type"] == "application/problem+json"
        else:
            assert response.status_code == 200, (route, response.text)
    for path, body in (
        ("/sessions", {"name": "x"}),
        (f"/scenarios/{tree['scenario']}/solve", None),
        (f"/solutions/{tree['solution']}/cancel", None),
    ):
        refused = await team.dave.call("POST", path, body)
        assert refused.status_code == 403, (path, refused.text)
    for route in PLAN_VIEWS:
        # Read, so not refused: a viewer is told the payload holds no plan, as a member would be.
        viewed = await send(team.dave, route, tree[route.kind])
        assert viewed.status_code == 409, (route, viewed.text)
    ticket = await team.dave.call("POST", f"/solutions/{tree['solution']}/events/ticket")
    assert ticket.status_code == 200, ticket.text  # a viewer follows solves
    assert await workspace_snapshot(clean_db, team.workspace) == before
    me = (await team.dave.call("GET", "/users/me")).json()
    assert me["workspace"] == {
        "id": str(team.workspace),
        "kind": "organization",
        "name": "Acme",
        "role": "viewer",
    }
    assert me["roles"] == []  # a workspace role is never a global one


async def test_row_level_security_binds_the_member_not_the_workspace_setting(
    app: FastAPI, team: Team, service_db: Database
) -> None:
    tree = await build_tree(team.alice)
    insert = "INSERT INTO sessions (id, workspace_id, user_id, name) VALUES ($1, $2, $3, 'planted')"
    # A viewer's transaction reads, and cannot insert.
    async with service_db.as_member(team.workspace, team.dave.user_id) as conn:
        assert await conn.fetchval("SELECT count(*) FROM sessions") == 1
    with pytest.raises(asyncpg.PostgresError, match="row-level security"):
        async with service_db.as_member(team.workspace, team.dave.user_id) as conn:
            await conn.execute(insert, new_id(), team.workspace, team.dave.user_id)
    # Nor can a member insert a row in someone else's name.
    with pytest.raises(asyncpg.PostgresError, match="row-level security"):
        async with service_db.as_member(team.workspace, team.bob.user_id) as conn:
            await conn.execute(insert, new_id(), team.workspace, team.alice.user_id)
    # app.workspace_id naming a foreign workspace sees nothing and writes nothing.
    async with service_db.as_member(team.workspace, team.carol.user_id) as conn:
        for table in ("sessions", "scenarios", "solutions"):
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
        assert (
            await conn.fetchval("UPDATE sessions SET name = 'x' WHERE id = $1 RETURNING id", tree["session"])
            is None
        )
    with pytest.raises(asyncpg.PostgresError, match="row-level security"):
        async with service_db.as_member(team.workspace, team.carol.user_id) as conn:
            await conn.execute(insert, new_id(), team.workspace, team.carol.user_id)
    # Nor does the setting alone, with no member named.
    async with service_db.privileged() as conn:
        await conn.execute(
            "SELECT set_config('app.workspace_id', $1, true), set_config('role', 'routebook_app', true)",
            str(team.workspace),
        )
        assert await conn.fetchval("SELECT count(*) FROM sessions") == 0


async def test_a_role_change_applies_on_the_next_request(app: FastAPI, team: Team) -> None:
    tree = await build_tree(team.alice)
    assert (await team.bob.call("PATCH", f"/sessions/{tree['session']}", {"name": "ok"})).status_code == 200
    async with app_state(app).db.privileged() as conn:
        assert await store.set_membership(conn, team.workspace, team.bob.user_id, Role.VIEWER, None)

    async def refused() -> bool:
        return (
            await team.bob.call("PATCH", f"/sessions/{tree['session']}", {"name": "no"})
        ).status_code == 403

    await eventually(refused)
    assert (await team.bob.call("GET", f"/sessions/{tree['session']}")).json()["name"] == "ok"


async def test_a_removal_is_404_on_the_next_request_on_every_instance(
    app: FastAPI, app_factory: AppFactory, team: Team
) -> None:
    tree = await build_tree(team.alice)
    async with app_factory() as second, client_for(second) as http:
        on_second = replace(team.bob, http=http)

        async def listening() -> bool:
            return app_state(second).workspaces.live and app_state(app).workspaces.live

        await eventually(listening)
        for caller in (team.bob, on_second):  # both instances have the membership cached
            assert (await caller.call("GET", f"/sessions/{tree['session']}")).status_code == 200
        async with app_state(app).db.privileged() as conn:
            assert await store.set_membership(conn, team.workspace, team.bob.user_id, None, None)
        # The very next request reads nothing of the workspace, on either instance: row-level
        # security asks the memberships table itself, whatever a gate still has cached.
        for caller in (team.bob, on_second):
            assert (await caller.call("GET", f"/sessions/{tree['session']}")).status_code == 404
        # And each gate, told by NOTIFY, refuses the workspace itself (a loaded machine may deliver
        # the announcement a moment after the commit).
        for caller in (team.bob, on_second):

            async def refused(caller: Caller = caller) -> bool:
                return (await caller.call("GET", "/sessions")).status_code == 404

            await eventually(refused, timeout=5)
    assert (await team.alice.call("GET", f"/sessions/{tree['session']}")).status_code == 200


async def test_a_workspace_request_stays_within_its_round_trips(app: FastAPI, team: Team) -> None:
    """The membership check is served from the cache: a member's planning request in an organisation
    workspace sends BEGIN with the scope, the statement and COMMIT, as in a personal one."""
    await build_tree(team.bob)
    db = app_state(app).db

    async def cached() -> bool:
        return not await record(db, team.bob.call("GET", "/users/me"))

    await eventually(cached)
    sent = await record(db, team.bob.call("GET", "/sessions"))
    assert len(sent) <= 3, sent
    assert f"set_config('app.workspace_id', '{team.workspace}', true)" in sent[0]
