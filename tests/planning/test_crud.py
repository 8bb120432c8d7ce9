"""The planning routes' ordinary behaviour: statuses, Location, cascades, summaries, OpenAPI."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

from tests.kit.sql import SqlAdmin, scope_rls_to
from tests.planning.conftest import Caller


async def count(db: SqlAdmin, caller: Caller, table: str) -> int:
    async with db.transaction() as session:
        await scope_rls_to(session, caller.user_id)
        result = await session.execute(
            text(f"SELECT count(*) FROM {table} WHERE user_id = :u"), {"u": caller.user_id}
        )
        return int(result.scalar_one())


async def test_a_session_tree_lives_and_dies_together(alice: Caller, clean_db: SqlAdmin) -> None:
    session = await alice.call("POST", "/sessions", {"name": "Monday"})
    assert session.status_code == 201
    assert session.headers["location"] == f"/api/v1/sessions/{session.json()['id']}"
    session_id = session.json()["id"]
    assert (await alice.http.get(session.headers["location"], headers=alice.headers)).json() == session.json()

    renamed = await alice.call("PATCH", f"/sessions/{session_id}", {"name": "Tuesday"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Tuesday"
    assert renamed.json()["updated_at"] > session.json()["updated_at"]

    scenarios = []
    for name in ("a", "b"):
        created = await alice.call(
            "POST", f"/sessions/{session_id}/scenarios", {"name": name, "request": {"n": name}}
        )
        assert created.status_code == 201
        assert created.headers["location"] == f"/api/v1/scenarios/{created.json()['id']}"
        assert created.json()["session_id"] == session_id
        scenarios.append(created.json()["id"])
    for scenario_id in scenarios:
        for status in ("failed", "succeeded"):
            solution = await alice.call(
                "POST", f"/scenarios/{scenario_id}/solutions", {"status": status, "payload": {"s": 1}}
            )
            assert solution.status_code == 201
            assert solution.headers["location"] == f"/api/v1/solutions/{solution.json()['id']}"
    assert (await count(clean_db, alice, "solutions")) == 4

    # Deleting a scenario removes its solutions, not its siblings'.
    assert (await alice.call("DELETE", f"/scenarios/{scenarios[0]}")).status_code == 204
    assert (await alice.call("GET", f"/scenarios/{scenarios[0]}")).status_code == 404
    assert (await count(clean_db, alice, "solutions")) == 2
    assert (await count(clean_db, alice, "scenarios")) == 1

    # Deleting a session removes its scenarios and their solutions.
    assert (await alice.call("DELETE", f"/sessions/{session_id}")).status_code == 204
    for table in ("sessions", "scenarios", "solutions"):
        assert await count(clean_db, alice, table) == 0
    assert (await alice.call("DELETE", f"/sessions/{session_id}")).status_code == 404
    assert (await alice.call("GET", f"/sessions/{session_id}/scenarios")).status_code == 404


async def test_reads_and_lists_have_the_documented_shapes(alice: Caller) -> None:
    session_id = (await alice.call("POST", "/sessions", {"name": "shapes"})).json()["id"]
    scenario = (
        await alice.call("POST", f"/sessions/{session_id}/scenarios", {"name": "c", "request": {"k": [1]}})
    ).json()
    read = (await alice.call("GET", f"/scenarios/{scenario['id']}")).json()
    assert set(read) == {"id", "session_id", "name", "request", "created_at", "updated_at", "created_by"}
    assert read["created_by"] == str(alice.user_id)
    assert read == {**scenario, "request": {"k": [1]}}
    listed = (await alice.call("GET", f"/sessions/{session_id}/scenarios")).json()
    assert listed == {"items": [scenario], "next_cursor": None}

    solution = (
        await alice.call("POST", f"/scenarios/{scenario['id']}/solutions", {"status": "failed"})
    ).json()
    assert set(solution) == {"id", "scenario_id", "status", "created_at", "updated_at", "created_by"}
    patched = await alice.call("PATCH", f"/solutions/{solution['id']}", {"payload": {"route": [3, 1]}})
    assert patched.json()["status"] == "failed"
    full = (await alice.call("GET", f"/solutions/{solution['id']}")).json()
    assert full["payload"] == {"route": [3, 1]} and full["status"] == "failed"
    assert (await alice.call("DELETE", f"/solutions/{solution['id']}")).status_code == 204
    assert (await alice.call("GET", f"/scenarios/{scenario['id']}/solutions")).json()["items"] == []


async def test_openapi_documents_the_planning_shapes(app: FastAPI, alice: Caller) -> None:
    schema: dict[str, Any] = (await alice.http.get("/openapi.json")).json()
    paths = schema["paths"]
    for path in (
        "/api/v1/sessions",
        "/api/v1/sessions/{session_id}",
        "/api/v1/sessions/{session_id}/scenarios",
        "/api/v1/scenarios/{scenario_id}",
        "/api/v1/scenarios/{scenario_id}/original",
        "/api/v1/scenarios/{scenario_id}/reset",
        "/api/v1/scenarios/{scenario_id}/solutions",
        "/api/v1/solutions/{solution_id}",
    ):
        assert path in paths, path
    get_scenario = paths["/api/v1/scenarios/{scenario_id}"]["get"]["responses"]["200"]
    assert get_scenario["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ScenarioRead"
    }
    assert "ETag" in get_scenario["headers"]
    assert "request" in schema["components"]["schemas"]["ScenarioRead"]["properties"]
    assert "payload" in schema["components"]["schemas"]["SolutionRead"]["properties"]
    create = paths["/api/v1/sessions/{session_id}/scenarios"]["post"]["requestBody"]["content"][
        "application/json"
    ]
    assert set(create["schema"]["required"]) == {"name", "request"}
    assert create["schema"]["additionalProperties"] is False
    patch = paths["/api/v1/scenarios/{scenario_id}"]["patch"]
    assert any(p["name"] == "If-Match" for p in patch["parameters"])
    assert "412" in patch["responses"] and "404" in patch["responses"]
