"""Optimistic concurrency: ETags from `version`; a stale If-Match is 412 and writes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text

from service.core.db import Database, new_id
from service.core.errors import PreconditionFailed
from service.core.preconditions import expected_versions
from service.planning.repository import PlanningRepository
from tests.kit.sql import SqlAdmin, scope_rls_to
from tests.planning.conftest import Caller


async def scenario(caller: Caller) -> str:
    session = await caller.call("POST", "/sessions", {"name": "etag"})
    created = await caller.call(
        "POST", f"/sessions/{session.json()['id']}/scenarios", {"name": "v1", "request": {"v": 1}}
    )
    assert created.status_code == 201 and created.headers["etag"] == '"1"'
    return str(created.json()["id"])


async def stored(db: SqlAdmin, user_id: uuid.UUID, table: str, item_id: str) -> dict[str, Any]:
    async with db.transaction() as session:
        await scope_rls_to(session, user_id)
        row = (
            (await session.execute(text(f"SELECT * FROM {table} WHERE id = :id"), {"id": item_id}))
            .mappings()
            .one()
        )
    return dict(row)


async def test_stale_if_match_is_412_and_the_row_is_unchanged(alice: Caller, clean_db: SqlAdmin) -> None:
    scenario_id = await scenario(alice)
    read = await alice.call("GET", f"/scenarios/{scenario_id}")
    assert read.headers["etag"] == '"1"'

    fresh = await alice.call(
        "PATCH", f"/scenarios/{scenario_id}", {"name": "v2"}, headers={"If-Match": '"1"'}
    )
    assert fresh.status_code == 200 and fresh.headers["etag"] == '"2"'
    before = await stored(clean_db, alice.user_id, "scenarios", scenario_id)

    for stale in ('"1"', 'W/"2"', '"3"', "2", "garbage", '"1", "3"'):
        response = await alice.call(
            "PATCH",
            f"/scenarios/{scenario_id}",
            {"name": "lost", "request": {"v": 9}},
            headers={"If-Match": stale},
        )
        assert response.status_code == 412, (stale, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        reset = await alice.call("POST", f"/scenarios/{scenario_id}/reset", headers={"If-Match": stale})
        assert reset.status_code == 412
    assert await stored(clean_db, alice.user_id, "scenarios", scenario_id) == before

    listed = await alice.call(
        "PATCH", f"/scenarios/{scenario_id}", {"name": "v3"}, headers={"If-Match": '"1", "2"'}
    )
    assert listed.status_code == 200 and listed.headers["etag"] == '"3"'
    anything = await alice.call(
        "PATCH", f"/scenarios/{scenario_id}", {"name": "v4"}, headers={"If-Match": "*"}
    )
    assert anything.status_code == 200 and anything.headers["etag"] == '"4"'


async def test_without_if_match_the_write_goes_through_and_every_write_bumps(
    alice: Caller, clean_db: SqlAdmin
) -> None:
    scenario_id = await scenario(alice)
    versions, stamps = [], []
    for method, path, body in (
        ("PATCH", f"/scenarios/{scenario_id}", {"name": "renamed"}),
        ("PATCH", f"/scenarios/{scenario_id}", {"request": {"v": 2}}),
        ("POST", f"/scenarios/{scenario_id}/reset", None),
        ("PATCH", f"/scenarios/{scenario_id}", {}),
    ):
        response = await alice.call(method, path, body)
        assert response.status_code == 200, response.text
        row = await stored(clean_db, alice.user_id, "scenarios", scenario_id)
        assert response.headers["etag"] == f'"{row["version"]}"'
        versions.append(row["version"])
        stamps.append(row["updated_at"])
    assert versions == [2, 3, 4, 5]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4
    assert (await alice.call("GET", f"/scenarios/{scenario_id}")).headers["etag"] == '"5"'


async def test_solutions_honour_if_match_too(alice: Caller, clean_db: SqlAdmin) -> None:
    scenario_id = await scenario(alice)
    created = await alice.call("POST", f"/scenarios/{scenario_id}/solutions", {"status": "succeeded"})
    solution_id = created.json()["id"]
    assert (await alice.call("GET", f"/solutions/{solution_id}")).headers["etag"] == '"1"'
    ok = await alice.call(
        "PATCH", f"/solutions/{solution_id}", {"status": "failed"}, headers={"If-Match": '"1"'}
    )
    assert ok.status_code == 200 and ok.headers["etag"] == '"2"'
    before = await stored(clean_db, alice.user_id, "solutions", solution_id)
    stale = await alice.call(
        "PATCH",
        f"/solutions/{solution_id}",
        {"status": "failed", "payload": {"x": 1}},
        headers={"If-Match": '"1"'},
    )
    assert stale.status_code == 412
    assert await stored(clean_db, alice.user_id, "solutions", solution_id) == before
    done = await alice.call(
        "PATCH", f"/solutions/{solution_id}", {"status": "succeeded", "payload": {"km": 5}}
    )
    assert done.status_code == 200 and done.headers["etag"] == '"3"'
    assert (await alice.call("GET", f"/solutions/{solution_id}")).json()["payload"] == {"km": 5}


def test_if_match_parsing() -> None:
    assert expected_versions(None) is None
    assert expected_versions("*") is None
    assert expected_versions('"3"') == {3}
    assert expected_versions(' "3" , "4"') == {3, 4}
    assert expected_versions('W/"3"') == frozenset()  # weak tags never match If-Match
    assert expected_versions("3") == frozenset()
    assert expected_versions('"' + "9" * 40 + '"') == frozenset()
    assert expected_versions('"2147483647", "2147483648", "-1"') == {2147483647}


async def test_tags_no_stored_version_can_carry_are_412_or_404(
    alice: Caller, bob: Caller, clean_db: SqlAdmin
) -> None:
    """Versions are int4: a tag past 2^31 - 1 can never match, so it fails the precondition."""
    scenario_id = await scenario(alice)
    solution_id = (
        await alice.call("POST", f"/scenarios/{scenario_id}/solutions", {"status": "succeeded"})
    ).json()["id"]
    before = await stored(clean_db, alice.user_id, "scenarios", scenario_id)
    writes = (
        ("PATCH", "/scenarios/{}", {"name": "lost"}, scenario_id),
        ("POST", "/scenarios/{}/reset", None, scenario_id),
        ("PATCH", "/solutions/{}", {"status": "failed"}, solution_id),
    )
    for tag in ('"2147483648"', '"999999999999999999"', '"-1"', '"2147483648", "4294967297"'):
        for method, path, body, item_id in writes:
            mine = await alice.call(method, path.format(item_id), body, headers={"If-Match": tag})
            assert mine.status_code == 412, (tag, path, mine.text)
            for caller, target in ((bob, item_id), (alice, str(new_id()))):
                other = await caller.call(method, path.format(target), body, headers={"If-Match": tag})
                assert other.status_code == 404, (tag, path, other.text)
    assert await stored(clean_db, alice.user_id, "scenarios", scenario_id) == before


async def test_if_match_lists_at_most_32_tags(app: FastAPI, alice: Caller, clean_db: SqlAdmin) -> None:
    scenario_id = await scenario(alice)
    before = await stored(clean_db, alice.user_id, "scenarios", scenario_id)
    for count in (33, 40_000):
        tags = ", ".join(f'"{version}"' for version in range(1, count + 1))
        response = await alice.call(
            "PATCH", f"/scenarios/{scenario_id}", {"name": "many"}, headers={"If-Match": tags}
        )
        assert response.status_code == 422, (count, response.text)
        assert [error["loc"] for error in response.json()["errors"]] == [["header", "If-Match"]]
    assert await stored(clean_db, alice.user_id, "scenarios", scenario_id) == before

    tags = ", ".join(f'"{version}"' for version in range(1, 33))
    response = await alice.call(
        "PATCH", f"/scenarios/{scenario_id}", {"name": "many"}, headers={"If-Match": tags}
    )
    assert response.status_code == 200 and response.headers["etag"] == '"2"'
    parameters = app.openapi()["paths"]["/api/v1/scenarios/{scenario_id}"]["patch"]["parameters"]
    if_match = next(p for p in parameters if p["name"] == "If-Match")
    assert "32" in if_match["description"] and "422" in if_match["description"]


async def test_the_version_check_binds_one_parameter_whatever_the_number_of_versions(
    alice: Caller, service_db: Database
) -> None:
    """asyncpg refuses statements past 32,767 parameters: the versions go as one array."""
    scenario_id = uuid.UUID(await scenario(alice))
    async with service_db.as_user(alice.user_id) as conn:
        repository = PlanningRepository(conn, workspace=alice.user_id, user=alice.user_id)
        record = await repository.update_scenario(
            scenario_id, name="many", raw_body=None, expected=frozenset(range(1, 40_001))
        )
        assert record.version == 2
        with pytest.raises(PreconditionFailed):
            await repository.reset_scenario(scenario_id, frozenset(range(3, 40_003)))
