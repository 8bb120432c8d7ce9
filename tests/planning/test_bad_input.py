"""Client mistakes are 422 (or 413 / 415) with nothing written — never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import AppFactory, client_for
from tests.kit.sql import SqlAdmin
from tests.planning.conftest import Caller, row_snapshot, sign_in


async def tree(caller: Caller) -> dict[str, str]:
    session = (await caller.call("POST", "/sessions", {"name": "inputs"})).json()["id"]
    scenario = (
        await caller.call("POST", f"/sessions/{session}/scenarios", {"name": "c", "request": {"a": 1}})
    ).json()["id"]
    solution = (
        await caller.call("POST", f"/scenarios/{scenario}/solutions", {"status": "succeeded"})
    ).json()["id"]
    return {"session": session, "scenario": scenario, "solution": solution}


NOT_AN_OBJECT: list[Any] = [[], [1], "text", 3, 2.5, None, True]

CASES: list[tuple[str, str, Any]] = [
    # (method, path template, body)
    *[("POST", "/sessions/{session}/scenarios", {"name": "x", "request": bad}) for bad in NOT_AN_OBJECT],
    *[("PATCH", "/scenarios/{scenario}", {"request": bad}) for bad in NOT_AN_OBJECT],
    *[
        ("POST", "/scenarios/{scenario}/solutions", {"status": "succeeded", "payload": bad})
        for bad in NOT_AN_OBJECT
    ],
    *[("PATCH", "/solutions/{solution}", {"payload": bad}) for bad in NOT_AN_OBJECT],
    *[
        (method, path, bad)
        for method, path in (("POST", "/sessions"), ("PATCH", "/sessions/{session}"))
        for bad in NOT_AN_OBJECT
    ],
    ("POST", "/sessions", {}),
    ("POST", "/sessions", {"name": 123}),
    ("POST", "/sessions", {"name": ["a"]}),
    ("POST", "/sessions", {"name": ""}),
    ("POST", "/sessions", {"name": "   \t\n "}),
    ("POST", "/sessions", {"name": "x" * 201}),
    ("POST", "/sessions", {"name": "nul \u0000 inside"}),
    ("POST", "/sessions", {"name": "ok", "owner": "someone-else"}),
    ("POST", "/sessions", {"name": "ok", "user_id": "01a20887-9aef-715a-bba9-7a10b66ea2d6"}),
    ("PATCH", "/sessions/{session}", {"name": None}),
    ("PATCH", "/sessions/{session}", {"name": "ok", "unknown": 1}),
    ("POST", "/sessions/{session}/scenarios", {"name": "x"}),
    ("POST", "/sessions/{session}/scenarios", {"request": {}}),
    ("POST", "/sessions/{session}/scenarios", {"name": "x" * 201, "request": {}}),
    ("POST", "/sessions/{session}/scenarios", {"name": "x", "request": {}, "original_request": {}}),
    ("PATCH", "/scenarios/{scenario}", {"name": "renamed", "original_request": {"forged": True}}),
    ("PATCH", "/scenarios/{scenario}", {"version": 7}),
    ("PATCH", "/scenarios/{scenario}", {"name": None}),
    ("PATCH", "/scenarios/{scenario}", {"name": 5}),
    ("POST", "/scenarios/{scenario}/solutions", {}),
    ("POST", "/scenarios/{scenario}/solutions", {"status": "done"}),
    ("POST", "/scenarios/{scenario}/solutions", {"status": "PENDING"}),
    ("POST", "/scenarios/{scenario}/solutions", {"status": 1}),
    ("PATCH", "/solutions/{solution}", {"status": "cancelled"}),
    ("PATCH", "/solutions/{solution}", {"status": None}),
    ("PATCH", "/solutions/{solution}", {"scenario_id": "01a20887-9aef-715a-bba9-7a10b66ea2d6"}),
]
RAW_BODIES = [
    b'{"name":',
    b"{name: 1}",
    b"",
    b"\xff\xfe",
    b'{"name": "a"} trailing',
    b"nul",
    b'{"name": "\xc3"}',
]


async def test_invalid_bodies_are_422_and_write_nothing(alice: Caller, clean_db: SqlAdmin) -> None:
    ids = await tree(alice)
    before = await row_snapshot(clean_db, alice.user_id)
    for method, template, body in CASES:
        response = await alice.call(method, template.format(**ids), body if body is not None else b"null")
        assert response.status_code == 422, (method, template, body, response.text)
        problem = response.json()
        assert problem["status"] == 422 and problem["errors"], problem
        assert all(error["loc"][0] == "body" for error in problem["errors"])
    for raw in RAW_BODIES:
        for method, template in (
            ("POST", "/sessions"),
            ("POST", "/sessions/{session}/scenarios"),
            ("PATCH", "/scenarios/{scenario}"),
        ):
            response = await alice.call(method, template.format(**ids), raw)
            assert response.status_code == 422, (method, template, raw, response.text)
    assert await row_snapshot(clean_db, alice.user_id) == before


async def test_names_are_trimmed_and_200_characters_fit(alice: Caller) -> None:
    created = await alice.call("POST", "/sessions", {"name": "  " + "é" * 200 + "\n"})
    assert created.status_code == 201 and created.json()["name"] == "é" * 200


async def test_bodies_over_the_limit_are_413(app_factory: AppFactory, clean_db: SqlAdmin) -> None:
    async with app_factory(max_body_bytes=2_000) as app, client_for(app) as http:
        alice = await sign_in(app, http, "alice")
        ids = await tree(alice)
        before = await row_snapshot(clean_db, alice.user_id)
        big = {"name": "big", "request": {"blob": "x" * 5_000}}
        response = await alice.call("POST", f"/sessions/{ids['session']}/scenarios", big)
        assert response.status_code == 413
        response = await alice.call(
            "PATCH", f"/scenarios/{ids['scenario']}", {"request": {"blob": "x" * 5_000}}
        )
        assert response.status_code == 413

        async def chunks() -> Any:  # no Content-Length: counted while it streams in
            for _ in range(10):
                yield b" " * 500

        streamed = await http.post(
            f"/api/v1/sessions/{ids['session']}/scenarios",
            content=chunks(),
            headers={**alice.headers, "content-type": "application/json"},
        )
        assert streamed.status_code == 413
        assert await row_snapshot(clean_db, alice.user_id) == before


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_non_json_bodies_are_415(alice: Caller, content_type: str) -> None:
    response = await alice.call("POST", "/sessions", b'{"name": "x"}', headers={"content-type": content_type})
    assert response.status_code == 415
