"""Keyset pagination: every row exactly once, newest first, stable while rows arrive; cursors are
bound to their list and a tampered or foreign one is 422."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest

from service.core.db import Database, new_id
from service.core.errors import ValidationFailed
from service.core.pagination import Cursor, decode_cursor, encode_cursor
from service.planning.repository import PlanningRepository
from tests.kit.sql import SqlAdmin
from tests.planning.conftest import Caller, insert_scenarios


async def new_session(caller: Caller, name: str = "paged") -> uuid.UUID:
    response = await caller.call("POST", "/sessions", {"name": name})
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def pages(caller: Caller, path: str, limit: int) -> list[list[dict[str, object]]]:
    collected, cursor = [], None
    while True:
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = await caller.call("GET", path, params=params)
        assert response.status_code == 200, response.text
        collected.append(response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return collected


async def test_120_scenarios_page_through_without_duplicates_or_gaps(
    alice: Caller, clean_db: SqlAdmin
) -> None:
    session_id = await new_session(alice)
    ids = await insert_scenarios(clean_db, alice.user_id, session_id, 120)
    result = await pages(alice, f"/sessions/{session_id}/scenarios", 50)
    assert [len(page) for page in result] == [50, 50, 20]
    served = [uuid.UUID(str(item["id"])) for page in result for item in page]
    assert len(served) == len(set(served)) == 120
    assert set(served) == set(ids)
    # Newest first: all share one transaction's created_at, so the time-ordered ids decide.
    assert served == sorted(ids, reverse=True)
    shape = {"id", "session_id", "name", "created_at", "updated_at", "created_by"}
    assert all(set(item) == shape for item in result[0])


async def test_rows_inserted_between_pages_neither_repeat_nor_hide_others(
    alice: Caller, clean_db: SqlAdmin
) -> None:
    session_id = await new_session(alice)
    ids = await insert_scenarios(clean_db, alice.user_id, session_id, 120)
    path = f"/sessions/{session_id}/scenarios"
    first = (await alice.call("GET", path, params={"limit": 40})).json()
    served = [item["id"] for item in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        # Newer rows arrive while the client pages: they sort before the cursor, not into the rest.
        await insert_scenarios(clean_db, alice.user_id, session_id, 3)
        page = (await alice.call("GET", path, params={"limit": 40, "cursor": cursor})).json()
        served += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
    assert len(served) == len(set(served)) == 120
    assert {uuid.UUID(i) for i in served} == set(ids)


async def test_sessions_and_solutions_page_too(alice: Caller) -> None:
    created = [await new_session(alice, f"s{i}") for i in range(5)]
    result = await pages(alice, "/sessions", 2)
    assert [len(page) for page in result] == [2, 2, 1]
    assert [uuid.UUID(str(item["id"])) for page in result for item in page] == created[::-1]

    scenario = await alice.call("POST", f"/sessions/{created[0]}/scenarios", {"name": "c", "request": {}})
    scenario_id = scenario.json()["id"]
    made = []
    for status in ("failed", "succeeded", "succeeded"):
        solution = await alice.call(
            "POST", f"/scenarios/{scenario_id}/solutions", {"status": status, "payload": {"big": [1]}}
        )
        made.append(solution.json()["id"])
    solutions = await pages(alice, f"/scenarios/{scenario_id}/solutions", 2)
    items = [item for page in solutions for item in page]
    assert [item["id"] for item in items] == made[::-1]
    assert all("payload" not in item for item in items)


async def test_bad_cursors_and_limits_are_422(alice: Caller, bob: Caller, clean_db: SqlAdmin) -> None:
    session_id = await new_session(alice)
    other_session = await new_session(alice, "other")
    await insert_scenarios(clean_db, alice.user_id, session_id, 3)
    await insert_scenarios(clean_db, alice.user_id, other_session, 3)
    path = f"/sessions/{session_id}/scenarios"
    cursor = (await alice.call("GET", path, params={"limit": 1})).json()["next_cursor"]
    assert (await alice.call("GET", path, params={"limit": 1, "cursor": cursor})).status_code == 200

    tampered = cursor[:-3] + ("AAA" if not cursor.endswith("AAA") else "BBB")
    foreign_list = (
        await alice.call("GET", f"/sessions/{other_session}/scenarios", params={"limit": 1})
    ).json()
    await new_session(alice, "a second session, so the sessions list has a next page")
    sessions_cursor = (await alice.call("GET", "/sessions", params={"limit": 1})).json()["next_cursor"]
    for bad in (tampered, foreign_list["next_cursor"], sessions_cursor, "garbage", "%%%", "A" * 600):
        response = await alice.call("GET", path, params={"limit": 1, "cursor": bad})
        assert response.status_code == 422, (bad, response.text)
    # Another user's cursor for their own sessions list is foreign to this one.
    await new_session(bob, "b1")
    await new_session(bob, "b2")
    bobs = (await bob.call("GET", "/sessions", params={"limit": 1})).json()["next_cursor"]
    assert (await alice.call("GET", "/sessions", params={"cursor": bobs})).status_code == 422

    for limit in ("0", "101", "-1", "ten", "1.5"):
        response = await alice.call("GET", path, params={"limit": limit})
        assert response.status_code == 422, (limit, response.text)
    assert len((await alice.call("GET", path, params={"limit": 100})).json()["items"]) == 3
    assert len((await alice.call("GET", path)).json()["items"]) == 3


async def test_a_forged_cursor_with_a_timestamp_postgresql_cannot_compare_is_the_cursor_422(
    alice: Caller,
) -> None:
    """The checksum key is public by design (a cursor grants nothing): what decodes must be usable."""
    session_id = await new_session(alice)
    lists = {
        f"sessions:{alice.user_id}": "/sessions",
        f"scenarios:{session_id}": f"/sessions/{session_id}/scenarios",
    }
    for when in (
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),  # year 0 in UTC
        datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14))),  # year 10000 in UTC
        datetime(1, 1, 1, tzinfo=UTC),
    ):
        for scope, path in lists.items():
            forged = encode_cursor(scope, when, new_id())
            with pytest.raises(ValidationFailed):
                decode_cursor(scope, forged)
            response = await alice.call("GET", path, params={"cursor": forged})
            assert response.status_code == 422, (when, path, response.text)
            assert [error["loc"] for error in response.json()["errors"]] == [["query", "cursor"]]
    plausible = encode_cursor(f"sessions:{alice.user_id}", datetime(2001, 1, 1, tzinfo=UTC), new_id())
    assert (await alice.call("GET", "/sessions", params={"cursor": plausible})).json()["items"] == []


async def test_a_database_error_outside_a_document_write_propagates(
    alice: Caller, service_db: Database
) -> None:
    """Only a client's document maps to 'cannot be stored'; anywhere else the error is ours."""
    unusable = Cursor(created_at=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))), id=new_id())
    with pytest.raises((asyncpg.PostgresError, asyncpg.DataError, OverflowError, ValueError)):
        async with service_db.as_user(alice.user_id) as conn:
            await PlanningRepository(conn, workspace=alice.user_id, user=alice.user_id).list_sessions(
                10, unusable
            )
