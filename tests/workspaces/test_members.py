"""Routebook-managed workspaces: creating one, listing, adding, re-roling and removing members, and
every refusal — outsiders 404, members and viewers 403, personal and provider-synced workspaces and
the last admin 409, bad bodies 422 with JSON pointers — each leaving the memberships unchanged."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from service.core.db import Database, new_id
from service.workspaces.management import Management
from service.workspaces.models import Role
from tests.conftest import AppFactory, client_for
from tests.kit.sql import SqlAdmin
from tests.kit.waiting import eventually
from tests.planning.conftest import Caller, alice, bob, http, sign_in  # noqa: F401 (fixtures)

PROBLEM = "application/problem+json"


@pytest.fixture
async def carol(app: FastAPI, http: httpx.AsyncClient) -> Caller:  # noqa: F811
    return await sign_in(app, http, "carol")


async def create(caller: Caller, name: str = "Dispatch") -> str:
    response = await caller.call("POST", "/workspaces", {"name": name})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def put_role(caller: Caller, workspace: str, user: uuid.UUID | str, role: str) -> httpx.Response:
    return await caller.call("PUT", f"/workspaces/{workspace}/members/{user}", {"role": role})


async def memberships(db: SqlAdmin, workspace: str) -> dict[uuid.UUID, str | None]:
    """user → role of every membership row of the workspace, read by the login role."""
    async with db.transaction() as session:
        rows = await session.execute(
            text("SELECT user_id, role FROM memberships WHERE workspace_id = :w"), {"w": uuid.UUID(workspace)}
        )
        return {row.user_id: row.role for row in rows}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def test_a_created_workspace_has_its_creator_as_admin(alice: Caller, clean_db: SqlAdmin) -> None:  # noqa: F811
    response = await alice.call("POST", "/workspaces", {"name": "  Dispatch  "})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {"id": body["id"], "kind": "organization", "name": "Dispatch", "role": "admin"}
    assert response.headers["location"] == f"/api/v1/workspaces/{body['id']}/members"
    assert await memberships(clean_db, body["id"]) == {alice.user_id: "admin"}

    members = await alice.call("GET", f"/workspaces/{body['id']}/members")
    assert members.status_code == 200
    (only,) = members.json()["items"]
    assert only["user_id"] == str(alice.user_id) and only["role"] == "admin"
    assert only["email"] == "alice@example.com"


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({}, "/name"),
        ({"name": "   "}, "/name"),
        ({"name": "x" * 201}, "/name"),
        ({"name": 5}, "/name"),
        ({"name": "ok", "kind": "personal"}, "/kind"),
    ],
)
async def test_a_bad_workspace_body_is_422_with_a_pointer_and_creates_nothing(
    alice: Caller,  # noqa: F811
    clean_db: SqlAdmin,
    body: dict[str, Any],
    pointer: str,
) -> None:
    async with clean_db.transaction() as session:
        before = (await session.execute(text("SELECT count(*) FROM workspaces"))).scalar_one()
    problem = assert_problem(await alice.call("POST", "/workspaces", body), 422)
    assert pointer in [error.get("pointer") for error in problem["errors"]], problem
    async with clean_db.transaction() as session:
        assert (await session.execute(text("SELECT count(*) FROM workspaces"))).scalar_one() == before


async def test_an_admin_adds_re_roles_and_removes_a_member(
    alice: Caller,  # noqa: F811
    bob: Caller,  # noqa: F811
    clean_db: SqlAdmin,
) -> None:
    workspace = await create(alice)
    added = await put_role(alice, workspace, bob.user_id, "member")
    assert added.status_code == 200, added.text
    assert added.json()["user_id"] == str(bob.user_id) and added.json()["role"] == "member"
    again = await put_role(alice, workspace, bob.user_id, "member")
    assert again.status_code == 200 and again.json()["role"] == "member"
    viewer = await put_role(alice, workspace, bob.user_id, "viewer")
    assert viewer.status_code == 200 and viewer.json()["role"] == "viewer"
    assert await memberships(clean_db, workspace) == {alice.user_id: "admin", bob.user_id: "viewer"}

    # Every member lists the members, a viewer too, in the order they joined.
    listed = await bob.call("GET", f"/workspaces/{workspace}/members")
    assert [(m["user_id"], m["role"]) for m in listed.json()["items"]] == [
        (str(alice.user_id), "admin"),
        (str(bob.user_id), "viewer"),
    ]

    removed = await alice.call("DELETE", f"/workspaces/{workspace}/members/{bob.user_id}")
    assert removed.status_code == 204, removed.text
    assert await memberships(clean_db, workspace) == {alice.user_id: "admin"}
    assert_problem(await bob.call("GET", f"/workspaces/{workspace}/members"), 404)
    # A removed member can be added again.
    assert (await put_role(alice, workspace, bob.user_id, "member")).status_code == 200


async def test_members_and_viewers_cannot_manage_members(
    alice: Caller,  # noqa: F811
    bob: Caller,  # noqa: F811
    carol: Caller,
    clean_db: SqlAdmin,
) -> None:
    workspace = await create(alice)
    assert (await put_role(alice, workspace, bob.user_id, "member")).status_code == 200
    before = await memberships(clean_db, workspace)
    for role in ("member", "viewer"):
        assert (await put_role(alice, workspace, bob.user_id, role)).status_code == 200
        before = await memberships(clean_db, workspace)
        assert_problem(await put_role(bob, workspace, carol.user_id, "member"), 403)
        assert_problem(await put_role(bob, workspace, bob.user_id, "admin"), 403)
        assert_problem(await bob.call("DELETE", f"/workspaces/{workspace}/members/{alice.user_id}"), 403)
        assert await memberships(clean_db, workspace) == before


async def test_outsiders_get_404_on_every_route_exactly_as_for_a_missing_workspace(
    alice: Caller,  # noqa: F811
    bob: Caller,  # noqa: F811
    carol: Caller,
    clean_db: SqlAdmin,
) -> None:
    workspace = await create(alice)
    assert (await put_role(alice, workspace, bob.user_id, "member")).status_code == 200
    before = await memberships(clean_db, workspace)
    missing = str(new_id())
    for target in (workspace, missing):
        answers = [
            await carol.call("GET", f"/workspaces/{target}/members"),
            await put_role(carol, target, carol.user_id, "admin"),
            await put_role(carol, target, bob.user_id, "viewer"),
            await carol.call("DELETE", f"/workspaces/{target}/members/{bob.user_id}"),
        ]
        bodies = [assert_problem(answer, 404) for answer in answers]
        assert {body["detail"] for body in bodies} == {"The requested resource was not found."}
    assert await memberships(clean_db, workspace) == before


async def test_unknown_or_deleted_users_and_non_members_are_404(
    alice: Caller,  # noqa: F811
    bob: Caller,  # noqa: F811
    carol: Caller,
    clean_db: SqlAdmin,
) -> None:
    workspace = await create(alice)
    assert_problem(await put_role(alice, workspace, new_id(), "member"), 404)
    async with clean_db.transaction() as session:
        await session.execute(text("UPDATE users SET deleted_at = now() WHERE id = :u"), {"u": carol.user_id})
    assert_problem(await put_role(alice, workspace, carol.user_id, "member"), 404)
    assert_problem(await alice.call("DELETE", f"/workspaces/{workspace}/members/{bob.user_id}"), 404)
    assert await memberships(clean_db, workspace) == {alice.user_id: "admin"}


async def test_a_deleted_workspace_answers_404_to_its_own_admin(
    alice: Caller,  # noqa: F811
    bob: Caller,  # noqa: F811
    clean_db: SqlAdmin,
) -> None:
    workspace = await create(alice)
    assert (await put_role(alice, workspace, bob.user_id, "member")).status_code == 200
    async with clean_db.transaction() as session:
        await session.execute(
            text("UPDATE workspaces SET deleted_at = now() WHERE id = :w"), {"w": uuid.UUID(workspace)}
        )
    before = await memberships(clean_db, workspace)
    assert_problem(await alice.call("GET", f"/workspaces/{workspace}/members"), 404)
    assert_problem(await put_role(alice, workspace, bob.user_id, "admin"), 404)
    assert_problem(await alice.call("DELETE", f"/workspaces/{workspace}/members/{bob.user_id}"), 404)
    assert await memberships(clean_db, workspace) == before


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({}, "/role"),
        ({"role": "owner"}, "/role"),
        ({"role": None}, "/role"),
        ({"role": "admin", "x": 1}, "/x"),
    ],
)
async def test_a_bad_role_body_is_422_with_a_pointer(
    alice: Caller,  # noqa: F811
    bob: Caller,  # noqa: F811
    clean_db: SqlAdmin,
    body: dict[str, Any],
    pointer: str,
) -> None:
    workspace = await create(alice)
    problem = assert_problem(
        await alice.call("PUT", f"/workspaces/{workspace}/members/{bob.user_id}", body), 422
    )
    assert pointer in [error.get("pointer") for error in problem["errors"]], problem
    assert await memberships(clean_db, workspace) == {alice.user_id: "admin"}


async def test_ids_that_are_not_uuids_are_422(alice: Caller) -> None:  # noqa: F811
    assert_problem(await alice.call("GET", "/workspaces/not-a-uuid/members"), 422)
    assert_problem(await put_role(alice, str(new_id()), "nope", "member"), 422)


async def test_the_last_admin_cannot_be_demoted_or_removed(
    alice: Caller,  # noqa: F811
    bob: Caller,  # noqa: F811
    clean_db: SqlAdmin,
) -> None:
    workspace = await create(alice)
    assert (await put_role(alice, workspace, bob.user_id, "member")).status_code == 200
    for role in ("member", "viewer"):
        assert_problem(await put_role(alice, workspace, alice.user_id, role), 409)
    assert_problem(await alice.call("DELETE", f"/workspaces/{workspace}/members/{alice.user_id}"), 409)
    assert await memberships(clean_db, workspace) == {alice.user_id: "admin", bob.user_id: "member"}

    # With a second admin, either may step down or leave; then the other is the last one.
    assert (await put_role(alice, workspace, bob.user_id, "admin")).status_code == 200
    assert (await alice.call("DELETE", f"/workspaces/{workspace}/members/{alice.user_id}")).status_code == 204
    assert_problem(await put_role(bob, workspace, bob.user_id, "viewer"), 409)
    assert await memberships(clean_db, workspace) == {bob.user_id: "admin"}


async def test_a_personal_workspace_takes_no_members(
    alice: Caller,  # noqa: F811
    bob: Caller,  # noqa: F811
    clean_db: SqlAdmin,
) -> None:
    async with clean_db.transaction() as session:
        personal = (
            await session.execute(
                text("SELECT id FROM workspaces WHERE kind = 'personal' AND created_by = :u"),
                {"u": alice.user_id},
            )
        ).scalar_one()
    body = assert_problem(await put_role(alice, str(personal), bob.user_id, "member"), 409)
    assert "personal" in body["detail"]
    assert_problem(await alice.call("DELETE", f"/workspaces/{personal}/members/{alice.user_id}"), 409)
    assert await memberships(clean_db, str(personal)) == {alice.user_id: "admin"}
    # Its one member may list it; nobody else sees it.
    assert (await alice.call("GET", f"/workspaces/{personal}/members")).status_code == 200
    assert_problem(await bob.call("GET", f"/workspaces/{personal}/members"), 404)


async def test_a_provider_synced_workspace_refuses_member_changes(
    alice: Caller,  # noqa: F811
    bob: Caller,  # noqa: F811
    clean_db: SqlAdmin,
) -> None:
    workspace = new_id()
    async with clean_db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO workspaces (id, kind, provider, provider_org_id, name) "
                "VALUES (:w, 'organization', 'clerk', 'org_123', 'Acme')"
            ),
            {"w": workspace},
        )
        await session.execute(
            text(
                "INSERT INTO memberships (workspace_id, user_id, role) VALUES (:w, :a, 'admin'), (:w, :b, 'member')"
            ),
            {"w": workspace, "a": alice.user_id, "b": bob.user_id},
        )
    before = await memberships(clean_db, str(workspace))
    body = assert_problem(await put_role(alice, str(workspace), bob.user_id, "admin"), 409)
    assert "clerk" in body["detail"]
    assert_problem(await alice.call("DELETE", f"/workspaces/{workspace}/members/{bob.user_id}"), 409)
    assert await memberships(clean_db, str(workspace)) == before
    # Reading its members is fine: they are the provider's, shown as they are.
    listed = await bob.call("GET", f"/workspaces/{workspace}/members")
    assert {m["user_id"] for m in listed.json()["items"]} == {str(alice.user_id), str(bob.user_id)}


async def test_the_last_two_admins_stepping_down_at_once_leave_one_admin(
    alice: Caller,  # noqa: F811
    bob: Caller,  # noqa: F811
    clean_db: SqlAdmin,
) -> None:
    for _ in range(5):
        workspace = await create(alice)
        assert (await put_role(alice, workspace, bob.user_id, "admin")).status_code == 200
        answers = await asyncio.gather(
            put_role(alice, workspace, alice.user_id, "member"),
            put_role(bob, workspace, bob.user_id, "viewer"),
        )
        assert sorted(answer.status_code for answer in answers) == [200, 409], [a.text for a in answers]
        roles = list((await memberships(clean_db, workspace)).values())
        assert roles.count("admin") == 1, roles


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(
    alice: Caller,  # noqa: F811
    bob: Caller,  # noqa: F811
    clean_db: SqlAdmin,
) -> None:
    for _ in range(5):
        workspace = await create(alice)
        assert (await put_role(alice, workspace, bob.user_id, "admin")).status_code == 200
        answers = await asyncio.gather(
            put_role(alice, workspace, bob.user_id, "member"),
            put_role(bob, workspace, alice.user_id, "member"),
        )
        # The second to take the lock is no admin any more (403), or would demote the last one (409).
        assert sorted(answer.status_code for answer in answers)[0] == 200, [a.text for a in answers]
        assert sorted(answer.status_code for answer in answers)[1] in (403, 409), [a.text for a in answers]
        roles = list((await memberships(clean_db, workspace)).values())
        assert roles.count("admin") == 1, roles


async def test_a_change_waits_for_the_workspace_lock_and_then_sees_the_change_before_it(
    alice: Caller,  # noqa: F811
    bob: Caller,  # noqa: F811
    clean_db: SqlAdmin,
    service_db: Database,
) -> None:
    """Held open by hand: bob stepping down must wait for alice's stepping down, then be refused."""
    workspace = await create(alice)
    assert (await put_role(alice, workspace, bob.user_id, "admin")).status_code == 200
    async with service_db.privileged() as conn:
        first = Management(conn, caller=alice.user_id)
        await first.set_role(uuid.UUID(workspace), alice.user_id, Role.MEMBER)
        second = asyncio.create_task(put_role(bob, workspace, bob.user_id, "member"))

        async def waiting_on_the_lock() -> bool:
            return await clean_db.waits_on_a_lock("%FROM workspaces WHERE id%FOR UPDATE%")

        await eventually(waiting_on_the_lock)
        assert not second.done()
    # Alice stepped down and committed: bob is the last admin now, so his stepping down is refused.
    assert_problem(await second, 409)
    assert await memberships(clean_db, workspace) == {alice.user_id: "member", bob.user_id: "admin"}


async def test_a_removal_and_a_role_change_reach_another_instance(
    app_factory: AppFactory, clean_db: SqlAdmin
) -> None:
    """Bob's membership is cached by instance B; changes made on instance A reach B's next requests."""
    async with (
        app_factory() as app_a,
        app_factory() as app_b,
        client_for(app_a) as http_a,
        client_for(app_b) as http_b,
    ):
        alice_a = await sign_in(app_a, http_a, "alice")
        bob_b = await sign_in(app_b, http_b, "bob")
        workspace = await create(alice_a)
        assert (await put_role(alice_a, workspace, bob_b.user_id, "member")).status_code == 200
        inside = {"Routebook-Workspace": workspace}
        created = await alice_a.call("POST", "/sessions", {"name": "Monday"}, headers=inside)
        assert created.status_code == 201, created.text
        session = created.json()["id"]

        async def bob_on_b(method: str, path: str, body: Any = None) -> int:
            return (await bob_b.call(method, path, body, headers=inside)).status_code

        assert await bob_on_b("GET", f"/sessions/{session}") == 200
        assert await bob_on_b("POST", "/sessions", {"name": "Bob's"}) == 201

        # A member made a viewer on A: on B, Bob still reads but no longer writes.
        assert (await put_role(alice_a, workspace, bob_b.user_id, "viewer")).status_code == 200

        async def refused_to_write() -> bool:
            return await bob_on_b("POST", "/sessions", {"name": "again"}) == 403

        await eventually(refused_to_write)
        assert await bob_on_b("GET", f"/sessions/{session}") == 200

        # Removed on A: on B, every planning request in the workspace is a 404, as for a missing one.
        removed = await alice_a.call("DELETE", f"/workspaces/{workspace}/members/{bob_b.user_id}")
        assert removed.status_code == 204

        # Wait on the list: until B hears of the removal, row-level security already hides the
        # session (a 404) but the list is an empty 200; only the announcement turns it into a 404.
        async def gone() -> bool:
            return await bob_on_b("GET", "/sessions") == 404

        await eventually(gone)
        assert await bob_on_b("GET", f"/sessions/{session}") == 404
        assert await bob_on_b("POST", "/sessions", {"name": "late"}) == 404
        assert_problem(await bob_b.call("GET", f"/workspaces/{workspace}/members"), 404)
        # Alice, on either instance, still works in it.
        assert (await alice_a.call("GET", f"/sessions/{session}", headers=inside)).status_code == 200


async def test_a_write_the_database_refuses_before_the_cache_hears_of_a_demotion_is_403(
    alice: Caller,  # noqa: F811
    bob: Caller,  # noqa: F811
    clean_db: SqlAdmin,
) -> None:
    """The window between a demotion's commit and its announcement: this instance still holds Bob as
    a member, the row-level security policy reads his role fresh and refuses the insert."""
    workspace = await create(alice)
    assert (await put_role(alice, workspace, bob.user_id, "member")).status_code == 200
    inside = {"Routebook-Workspace": workspace}
    assert (await bob.call("POST", "/sessions", {"name": "first"}, headers=inside)).status_code == 201
    # Demoted behind the app's back: no announcement, so its cached role stays `member`.
    async with clean_db.transaction() as session:
        await session.execute(
            text("UPDATE memberships SET role = 'viewer' WHERE workspace_id = :w AND user_id = :u"),
            {"w": uuid.UUID(workspace), "u": bob.user_id},
        )
    refused = await bob.call("POST", "/sessions", {"name": "second"}, headers=inside)
    assert_problem(refused, 403)
    async with clean_db.transaction() as session:
        await session.execute(text("SELECT set_config('app.workspace_id', :w, true)"), {"w": workspace})
        names = (
            (
                await session.execute(
                    text("SELECT name FROM sessions WHERE workspace_id = :w"), {"w": uuid.UUID(workspace)}
                )
            )
            .scalars()
            .all()
        )
    assert names == ["first"]
