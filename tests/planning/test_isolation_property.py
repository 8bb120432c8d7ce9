"""Random interleavings of three users' operations: after every step, each user's listings hold
exactly the rows the database says they own, and every operation on someone else's id is a 404."""

from __future__ import annotations

import uuid
from collections import defaultdict

from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from service.core.db import new_id
from tests.kit.sql import SqlAdmin
from tests.planning.conftest import Caller, owners, sign_in

KINDS = ("session", "scenario", "solution")
TABLES = {"session": "sessions", "scenario": "scenarios", "solution": "solutions"}
# action -> (kind of the id it targets or None, method, path, body, success status)
ACTIONS: dict[str, tuple[str | None, str, str, object, int]] = {
    "create_session": (None, "POST", "/sessions", {"name": "s"}, 201),
    "create_scenario": (
        "session",
        "POST",
        "/sessions/{id}/scenarios",
        {"name": "c", "request": {"k": 1}},
        201,
    ),
    "create_solution": (
        "scenario",
        "POST",
        "/scenarios/{id}/solutions",
        {"status": "succeeded", "payload": {"p": 1}},
        201,
    ),
    "rename_session": ("session", "PATCH", "/sessions/{id}", {"name": "renamed"}, 200),
    "patch_scenario": ("scenario", "PATCH", "/scenarios/{id}", {"request": {"k": 2}}, 200),
    "reset_scenario": ("scenario", "POST", "/scenarios/{id}/reset", None, 200),
    "patch_solution": ("solution", "PATCH", "/solutions/{id}", {"status": "failed"}, 200),
    "read_scenario": ("scenario", "GET", "/scenarios/{id}", None, 200),
    "read_solution": ("solution", "GET", "/solutions/{id}", None, 200),
    "delete_session": ("session", "DELETE", "/sessions/{id}", None, 204),
    "delete_scenario": ("scenario", "DELETE", "/scenarios/{id}", None, 204),
    "delete_solution": ("solution", "DELETE", "/solutions/{id}", None, 204),
}
# Creations weighted up, so that examples build trees worth probing.
_WEIGHTED = sorted(ACTIONS) + ["create_session", "create_scenario", "create_solution"] * 3
operations = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(_WEIGHTED), st.integers(0, 1_000)), min_size=1, max_size=12
)


async def truth_of(db: SqlAdmin, users: list[Caller]) -> dict[str, dict[uuid.UUID, uuid.UUID]]:
    """kind -> {id: user_id}: the ground truth, read by the login role as each user in turn."""
    by_table = await owners(db, [user.user_id for user in users])
    return {kind: by_table[table] for kind, table in TABLES.items()}


async def listed(caller: Caller) -> dict[str, set[uuid.UUID]]:
    """Everything a user reaches by walking their listings."""
    seen: dict[str, set[uuid.UUID]] = defaultdict(set)
    sessions = await caller.call("GET", "/sessions", params={"limit": 100})
    for item in sessions.json()["items"]:
        seen["session"].add(uuid.UUID(item["id"]))
        for scenario in (await caller.call("GET", f"/sessions/{item['id']}/scenarios")).json()["items"]:
            seen["scenario"].add(uuid.UUID(scenario["id"]))
            for solution in (await caller.call("GET", f"/scenarios/{scenario['id']}/solutions")).json()[
                "items"
            ]:
                seen["solution"].add(uuid.UUID(solution["id"]))
    return seen


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=operations)
async def test_three_users_interleaved_see_only_their_own_rows(
    app: FastAPI, alice: Caller, bob: Caller, clean_db: SqlAdmin, steps: list[tuple[int, str, int]]
) -> None:
    carol = await sign_in(app, alice.http, "carol")  # idempotent: the same user on every example
    users = [alice, bob, carol]
    async with clean_db.transaction() as session:
        await session.execute(text("TRUNCATE sessions CASCADE"))  # each example starts empty
    ever: dict[str, list[uuid.UUID]] = {kind: [] for kind in KINDS}  # every id seen, deleted or not

    for actor_index, action, pick in steps:
        actor = users[actor_index]
        kind, method, path, body, success = ACTIONS[action]
        target = None
        if kind is not None:
            candidates = ever[kind]
            target = candidates[pick % len(candidates)] if candidates else new_id()
        truth = await truth_of(clean_db, users)
        mine = kind is None or truth[kind].get(target) == actor.user_id  # type: ignore[arg-type]

        response = await actor.call(method, path.format(id=target), body)
        assert response.status_code == (success if mine else 404), (action, mine, response.text)
        if response.status_code == 201:
            created_kind = {"create_session": "session", "create_scenario": "scenario"}.get(
                action, "solution"
            )
            ever[created_kind].append(uuid.UUID(response.json()["id"]))

        truth = await truth_of(clean_db, users)
        for user in users:
            expected = {k: {i for i, owner in truth[k].items() if owner == user.user_id} for k in KINDS}
            seen = await listed(user)
            assert {k: seen[k] for k in KINDS} == expected, (user.name, action)
        # A foreign session's scenario list is a 404, as for a missing one.
        for user in users:
            foreign = [i for i, owner in truth["session"].items() if owner != user.user_id][:1]
            for session_id in foreign:
                assert (await user.call("GET", f"/sessions/{session_id}/scenarios")).status_code == 404
