"""Bodies above JSON_INLINE_MAX_BYTES: checked in a worker process (a scenario's while PostgreSQL
writes it), written JSON_LARGE_WRITES at once.

Two apps on one database — one checks every body on the event loop, the other every body in its
offload pool (threshold 0) — get the same requests from the same user; their answers (status and
problem body) and what they store must be identical.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from service.deps import app_state
from tests.conftest import AppFactory, client_for
from tests.kit.sql import SqlAdmin
from tests.kit.waiting import eventually
from tests.planning.conftest import Caller, encode, row_snapshot, sign_in
from tests.planning.test_bad_input import CASES, RAW_BODIES, tree
from tests.planning.test_payloads import big_request, json_value, nested

DOCUMENTS_REFUSED = [
    b'{"bad": "nul \\u0000 inside"}',
    b'{"lone": "\\ud800"}',
    b'{"inf": 1e400}',
    b'{"nan": NaN}',
    b"[" * 2000 + b"]" * 2000,
    b'{"deep": ' + b"[" * 2000 + b"]" * 2000 + b"}",
    b'{"bad utf-8": "\xc3"}',
    b"[1, 2]",
    b'"text"',
    b"null",
]
DOCUMENTS_KEPT: list[Any] = [
    {"name": "Zürich → 東京 🚚", "combining": "e\u0301", "": "empty key"},
    {"max_u64": 2**64 - 1, "past_u64": 2**64, "huge": 2**200, "floats": [0.1, -2.5e-7, 1e3]},
    nested(200),
    big_request(1_500_000),
]


@dataclass(frozen=True)
class Pair:
    inline: Caller
    pooled: Caller

    async def both(self, method: str, path: str, body: Any) -> tuple[Any, Any]:
        answers = []
        for caller in (self.inline, self.pooled):
            response = await caller.call(method, path, body)
            answers.append((response.status_code, response.json() if response.content else None))
        return answers[0], answers[1]


@pytest.fixture
async def pair(app_factory: AppFactory) -> AsyncIterator[Pair]:
    # The same dev-issuer subject on both apps: one user, so either app reaches the other's rows.
    async with (
        app_factory(json_inline_max_bytes=2**40) as inline_app,
        app_factory(json_inline_max_bytes=0) as pooled_app,
        client_for(inline_app) as inline_http,
        client_for(pooled_app) as pooled_http,
    ):
        yield Pair(
            await sign_in(inline_app, inline_http, "alice"), await sign_in(pooled_app, pooled_http, "alice")
        )


async def test_invalid_bodies_get_the_same_422_from_a_worker(pair: Pair, clean_db: SqlAdmin) -> None:
    ids = await tree(pair.inline)
    before = await row_snapshot(clean_db, pair.inline.user_id)
    requests: list[tuple[str, str, Any]] = [
        (method, path, body if body is not None else b"null") for method, path, body in CASES
    ]
    requests += [("POST", "/sessions/{session}/scenarios", raw) for raw in RAW_BODIES]
    requests += [
        ("POST", "/sessions/{session}/scenarios", b'{"name": "x", "request": ' + raw + b"}")
        for raw in DOCUMENTS_REFUSED
    ]
    requests += [
        ("PATCH", "/solutions/{solution}", b'{"payload": ' + raw + b"}") for raw in DOCUMENTS_REFUSED
    ]
    for method, template, body in requests:
        inline, pooled = await pair.both(method, template.format(**ids), body)
        assert inline[0] == 422, (method, template, body, inline)
        assert pooled == inline, (method, template, body)
    assert await row_snapshot(clean_db, pair.inline.user_id) == before


async def test_documents_checked_in_a_worker_are_stored_alike(pair: Pair) -> None:
    children_before = set(multiprocessing.active_children())
    session = (await pair.inline.call("POST", "/sessions", {"name": "alike"})).json()["id"]
    assert set(multiprocessing.active_children()) == children_before  # inline: no worker
    for document in DOCUMENTS_KEPT:
        body = encode({"name": "doc", "request": document})
        stored = []
        for caller in (pair.inline, pair.pooled):
            created = await caller.call("POST", f"/sessions/{session}/scenarios", body)
            assert created.status_code == 201, created.text
            read = await caller.call("GET", f"/scenarios/{created.json()['id']}")
            stored.append(json_value(read.content)["request"])
        assert stored[0] == stored[1] == json_value(encode(document))
    # The pooled app did check them in a worker process of its own.
    assert set(multiprocessing.active_children()) - children_before


async def test_small_members_are_validated_in_the_worker_too(pair: Pair) -> None:
    session = (await pair.inline.call("POST", "/sessions", {"name": "fields"})).json()["id"]
    scenario = await pair.pooled.call(
        "POST", f"/sessions/{session}/scenarios", {"name": "  padded  ", "request": {"a": 1}}
    )
    assert scenario.status_code == 201 and scenario.json()["name"] == "padded"
    patched = await pair.pooled.call("PATCH", f"/scenarios/{scenario.json()['id']}", {"name": "renamed"})
    assert patched.status_code == 200 and patched.json()["name"] == "renamed"
    solution = await pair.pooled.call(
        "POST", f"/scenarios/{scenario.json()['id']}/solutions", {"status": "succeeded", "payload": {"r": []}}
    )
    assert solution.status_code == 201 and solution.json()["status"] == "succeeded"


async def test_large_writes_take_turns_and_a_wait_is_bounded(
    app_factory: AppFactory, clean_db: SqlAdmin
) -> None:
    async with (
        app_factory(json_inline_max_bytes=1_000, json_large_writes=1, json_large_writes_timeout=0.5) as app,
        client_for(app) as http,
    ):
        alice = await sign_in(app, http, "alice")
        session = (await alice.call("POST", "/sessions", {"name": "turns"})).json()["id"]
        large = {"name": "large", "request": {"blob": "x" * 2_000}}
        path = f"/sessions/{session}/scenarios"

        # A failed write gives its slot back: a missing session, then a document PostgreSQL refuses.
        missing = await alice.call("POST", "/sessions/01a20887-9aef-715a-bba9-7a10b66ea2d6/scenarios", large)
        assert missing.status_code == 404
        refused = await alice.call("POST", path, {"name": "nul", "request": {"blob": "x" * 2_000 + "\u0000"}})
        assert refused.status_code == 422

        slots = app_state(app).bodies.large_writes
        await slots.acquire()  # another large write in progress
        try:
            busy = await alice.call("POST", path, large)
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            assert busy.headers["content-type"] == "application/problem+json"
            small = await alice.call("POST", path, {"name": "small", "request": {"a": 1}})
            assert small.status_code == 201  # small bodies never wait for a slot
        finally:
            slots.release()
        written = await alice.call("POST", path, large)
        assert written.status_code == 201, written.text
        names = {item["name"] for item in (await alice.call("GET", path)).json()["items"]}
        assert names == {"small", "large"}


async def test_the_checks_422_wins_over_what_the_write_met(pair: Pair, clean_db: SqlAdmin) -> None:
    """A large body is checked while PostgreSQL writes it; an invalid one still answers as when it was
    checked before anything: not 404 for a missing session, not 412 for a stale If-Match."""
    ids = await tree(pair.inline)
    before = await row_snapshot(clean_db, pair.inline.user_id)
    missing = "01a20887-9aef-715a-bba9-7a10b66ea2d6"
    # PostgreSQL stores both documents; only the check refuses them.
    for document in (b'{"inf": 1e400}', b'{"deep": ' + b"[" * 1100 + b"]" * 1100 + b"}"):
        cases = [
            ("POST", f"/sessions/{missing}/scenarios", b'{"name": "x", "request": ' + document + b"}", {}),
            ("PATCH", f"/scenarios/{missing}", b'{"request": ' + document + b"}", {}),
            (
                "PATCH",
                f"/scenarios/{ids['scenario']}",
                b'{"request": ' + document + b"}",
                {"if-match": '"99"'},
            ),
            (
                "POST",
                f"/sessions/{ids['session']}/scenarios",
                b'{"name": "x", "request": {}, "extra": 1}',
                {},
            ),
        ]
        for method, path, body, headers in cases:
            answers = [
                await caller.call(method, path, body, headers=headers)
                for caller in (pair.inline, pair.pooled)
            ]
            assert answers[0].status_code == 422, (method, path, answers[0].text)
            assert answers[1].status_code == 422 and answers[1].json() == answers[0].json(), (method, path)
    assert await row_snapshot(clean_db, pair.inline.user_id) == before


async def test_large_transfers_take_turns_and_a_wait_is_bounded(app_factory: AppFactory) -> None:
    async with (
        app_factory(
            json_inline_max_bytes=1_000, json_large_transfers=1, json_large_writes_timeout=0.5
        ) as app,
        client_for(app) as http,
    ):
        alice = await sign_in(app, http, "alice")
        session = (await alice.call("POST", "/sessions", {"name": "transfers"})).json()["id"]
        path = f"/sessions/{session}/scenarios"
        large = {"name": "large", "request": {"blob": "x" * 2_000}}
        scenario = (await alice.call("POST", path, large)).json()["id"]

        slots = app_state(app).bodies.large_transfers
        await slots.acquire()  # another large document passing through
        try:
            for busy in (
                await alice.call("POST", path, large),
                await alice.call("GET", f"/scenarios/{scenario}"),
            ):
                assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
                assert busy.headers["content-type"] == "application/problem+json"
            small = await alice.call("POST", path, {"name": "small", "request": {"a": 1}})
            assert small.status_code == 201  # small bodies never wait for a slot
            assert (await alice.call("GET", f"/scenarios/{small.json()['id']}")).status_code == 200
        finally:
            slots.release()
        read = await alice.call("GET", f"/scenarios/{scenario}")
        assert read.status_code == 200 and read.json()["request"] == large["request"]


async def test_a_large_get_is_read_from_the_database_only_once_its_turn_has_come(
    app_factory: AppFactory,
) -> None:
    """A request stored larger than a small one's bound is rendered by PostgreSQL only in its
    transfer's turn, and the wait holds no pooled connection: with one connection in the pool,
    another request is served meanwhile, and a deletion made meanwhile is what the GET then reads."""
    async with (
        app_factory(json_large_transfers=1, db_pool_size=1) as app,
        client_for(app) as http,
    ):
        alice = await sign_in(app, http, "alice")
        session = (await alice.call("POST", "/sessions", {"name": "turns"})).json()["id"]
        # Random text does not compress: stored, it stays past WHOLE_STORED_BYTES.
        blob = os.urandom(200_000).hex()
        created = await alice.call(
            "POST", f"/sessions/{session}/scenarios", {"name": "big", "request": {"b": blob}}
        )
        assert created.status_code == 201, created.text
        scenario = created.json()["id"]
        assert (await alice.call("GET", f"/scenarios/{scenario}")).json()["request"] == {"b": blob}

        slots = app_state(app).bodies.large_transfers
        await slots.acquire()  # another large document passing through
        try:
            reading = asyncio.create_task(alice.call("GET", f"/scenarios/{scenario}"))

            async def waiting() -> bool:
                return bool(slots._waiters)  # asyncio.Semaphore's queue of waiting acquirers

            await eventually(waiting)
            assert (await alice.call("GET", f"/sessions/{session}/scenarios")).status_code == 200
            assert (await alice.call("DELETE", f"/scenarios/{scenario}")).status_code == 204
        finally:
            slots.release()
        assert (await reading).status_code == 404
