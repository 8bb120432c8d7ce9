"""The acceptance test of the project: a user cannot reach another user's planning data, even with
its ids. Every route and method answers another user's id exactly as a missing one (404, same
body), writes nothing, and refuses malformed ids with 422."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from service.core.db import new_id
from tests.kit.sql import SqlAdmin
from tests.planning.conftest import Caller, row_snapshot


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # "{id}" is a session, scenario or solution id, per `kind`
    kind: str
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()


ROUTES = [
    Route("GET", "/sessions/{id}", "session"),
    Route("PATCH", "/sessions/{id}", "session", {"name": "hijacked"}),
    Route("DELETE", "/sessions/{id}", "session"),
    Route("POST", "/sessions/{id}/scenarios", "session", {"name": "planted", "request": {"x": 1}}),
    Route("GET", "/sessions/{id}/scenarios", "session"),
    Route("GET", "/scenarios/{id}", "scenario"),
    Route("PATCH", "/scenarios/{id}", "scenario", {"name": "hijacked", "request": {"x": 2}}),
    # The victim's current version: a 412 here would confirm the row exists.
    Route("PATCH", "/scenarios/{id}", "scenario", {"name": "hijacked"}, (("If-Match", '"1"'),)),
    Route("PATCH", "/scenarios/{id}", "scenario", {"name": "hijacked"}, (("If-Match", '"99"'),)),
    Route("GET", "/scenarios/{id}/original", "scenario"),
    Route("POST", "/scenarios/{id}/reset", "scenario"),
    Route("POST", "/scenarios/{id}/reset", "scenario", None, (("If-Match", '"99"'),)),
    Route("DELETE", "/scenarios/{id}", "scenario"),
    Route("POST", "/scenarios/{id}/solutions", "scenario", {"status": "failed", "payload": {"p": 1}}),
    Route("GET", "/scenarios/{id}/solutions", "scenario"),
    Route("GET", "/scenarios/{id}/solutions?limit=1", "scenario"),
    Route("GET", "/solutions/{id}", "solution"),
    Route("PATCH", "/solutions/{id}", "solution", {"status": "failed", "payload": {"p": 2}}),
    Route("PATCH", "/solutions/{id}", "solution", {"status": "failed"}, (("If-Match", '"1"'),)),
    Route("DELETE", "/solutions/{id}", "solution"),
    Route(
        "POST",
        "/sessions/{id}/scenarios/import?depot_lat=52.5&depot_lon=13.4&vehicles=1&capacity=9",
        "session",
        b"id,lat,lon,demand\ns1,52.51,13.41,1\n",
        (("content-type", "text/csv"),),
    ),
]
# Views of a solution's plan: 409 for the trees built here (their payloads hold no plan), so they
# join the probes of another user's ids, where the answer must be the missing id's 404.
PLAN_VIEWS = [
    Route("GET", "/solutions/{id}?format=geojson", "solution"),
    Route("GET", "/solutions/{id}", "solution", None, (("accept", "application/geo+json"),)),
    Route("GET", "/solutions/{id}/compare/{id}", "solution"),
]
MALFORMED = ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g", f"{uuid.uuid4()}x"]


async def build_tree(caller: Caller) -> dict[str, uuid.UUID]:
    session = await caller.call("POST", "/sessions", {"name": f"{caller.name}'s trip"})
    scenario = await caller.call(
        "POST", f"/sessions/{session.json()['id']}/scenarios", {"name": "depot", "request": {"stops": [1]}}
    )
    solution = await caller.call(
        "POST", f"/scenarios/{scenario.json()['id']}/solutions", {"status": "succeeded", "payload": {"km": 3}}
    )
    assert solution.status_code == 201, solution.text
    return {
        "session": uuid.UUID(session.json()["id"]),
        "scenario": uuid.UUID(scenario.json()["id"]),
        "solution": uuid.UUID(solution.json()["id"]),
    }


async def deleted_tree(caller: Caller) -> dict[str, uuid.UUID]:
    tree = await build_tree(caller)
    assert (await caller.call("DELETE", f"/sessions/{tree['session']}")).status_code == 204
    return tree


def comparable(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Everything a client sees, except the per-request id."""
    headers = sorted((k, v) for k, v in response.headers.items() if k.lower() != "x-request-id")
    return response.status_code, response.content, headers


async def send(caller: Caller, route: Route, item_id: object) -> httpx.Response:
    return await caller.call(
        route.method, route.path.format(id=item_id), route.body, headers=dict(route.headers)
    )


@pytest.mark.parametrize("direction", ["bob-probes-alice", "alice-probes-bob"])
async def test_another_users_ids_answer_exactly_as_missing_ones(
    alice: Caller, bob: Caller, clean_db: SqlAdmin, direction: str
) -> None:
    victim, intruder = (alice, bob) if direction == "bob-probes-alice" else (bob, alice)
    victims_tree, intruders_tree = await build_tree(victim), await build_tree(intruder)
    gone = await deleted_tree(victim)
    before = await row_snapshot(clean_db, victim.user_id)

    for route in ROUTES + PLAN_VIEWS:
        missing = await send(intruder, route, new_id())
        assert missing.status_code == 404, (route, missing.text)
        for label, item_id in (("real", victims_tree[route.kind]), ("deleted", gone[route.kind])):
            probe = await send(intruder, route, item_id)
            assert comparable(probe) == comparable(missing), (route, label)
        # The owner's deleted ids answer the same too.
        assert comparable(await send(victim, route, gone[route.kind])) == comparable(missing), route
        assert await row_snapshot(clean_db, victim.user_id) == before, route

    # The intruder's own rows still answer, so the 404s above are not a broken route.
    for kind in ("session", "scenario", "solution"):
        own = await intruder.call("GET", f"/{kind}s/{intruders_tree[kind]}")
        assert own.status_code == 200, own.text
    assert (await victim.call("GET", f"/scenarios/{victims_tree['scenario']}")).status_code == 200


async def test_malformed_ids_are_422_on_every_route(alice: Caller, clean_db: SqlAdmin) -> None:
    await build_tree(alice)
    before = await row_snapshot(clean_db, alice.user_id)
    for route in ROUTES:
        for bad in MALFORMED:
            response = await send(alice, route, bad)
            assert response.status_code == 422, (route, bad, response.text)
            assert response.headers["content-type"] == "application/problem+json"
    assert await row_snapshot(clean_db, alice.user_id) == before


async def test_every_route_needs_a_token(alice: Caller) -> None:
    tree = await build_tree(alice)
    anonymous = Caller(name="anonymous", user_id=new_id(), http=alice.http, headers={})
    for route in ROUTES:
        response = await send(anonymous, route, tree[route.kind])
        assert response.status_code == 401, (route, response.text)
    for path in ("/sessions", f"/sessions/{tree['session']}/scenarios"):
        assert (await anonymous.call("GET", path)).status_code == 401
    assert (await anonymous.call("POST", "/sessions", {"name": "x"})).status_code == 401
