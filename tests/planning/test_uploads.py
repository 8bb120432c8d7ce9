"""A large scenario's body as clients really send it: in chunks without a Content-Length, or cut off
by a client that hangs up part-way (nothing written, nothing logged as an error)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from fastapi import FastAPI

from service.core.db import Database
from tests.planning.conftest import API, Caller
from tests.planning.test_payloads import big_request, new_session

MIB = 1 << 20


async def in_chunks(body: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def scenario_count(service_db: Database, caller: Caller) -> int:
    async with service_db.as_member(caller.user_id, caller.user_id) as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM scenarios WHERE workspace_id = $1", caller.user_id
        )
    return count


async def test_a_chunked_body_without_a_length_is_written_and_read_back_whole(alice: Caller) -> None:
    session_id = await new_session(alice)
    request = big_request(3 * MIB)
    body = orjson.dumps({"name": "chunked", "request": request})
    created = await alice.http.post(
        f"{API}/sessions/{session_id}/scenarios",
        content=in_chunks(body),
        headers={**alice.headers, "content-type": "application/json"},
    )
    assert created.status_code == 201, created.text
    # httpx sent it chunked: no Content-Length reached the app.
    assert created.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in created.request.headers
    read = await alice.call("GET", f"/scenarios/{created.json()['id']}")
    assert read.status_code == 200 and orjson.loads(read.content)["request"] == request

    patched = await alice.http.patch(
        f"{API}/scenarios/{created.json()['id']}",
        content=in_chunks(orjson.dumps({"request": {"edited": [1, 2, 3]}})),
        headers={**alice.headers, "content-type": "application/json"},
    )
    assert patched.status_code == 200, patched.text
    assert (await alice.call("GET", f"/scenarios/{created.json()['id']}")).json()["request"] == {
        "edited": [1, 2, 3]
    }


async def test_an_invalid_chunked_body_is_a_422_with_nothing_written(
    alice: Caller, service_db: Database
) -> None:
    session_id = await new_session(alice)
    body = orjson.dumps({"name": "bad", "request": big_request(2 * MIB)})[:-1]  # not closed
    refused = await alice.http.post(
        f"{API}/sessions/{session_id}/scenarios",
        content=in_chunks(body),
        headers={**alice.headers, "content-type": "application/json"},
    )
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
    assert await scenario_count(service_db, alice) == 0


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_client_that_hangs_up_mid_body_writes_nothing_and_logs_no_error(
    app: FastAPI,
    alice: Caller,
    service_db: Database,
    caplog: pytest.LogCaptureFixture,
    declared: bool,
) -> None:
    session_id = await new_session(alice)
    body = orjson.dumps({"name": "cut off", "request": big_request(3 * MIB)})
    headers = [(b"content-type", b"application/json")]
    headers += [(key.lower().encode(), value.encode()) for key, value in alice.headers.items()]
    headers.append(
        (b"content-length", str(len(body)).encode()) if declared else (b"transfer-encoding", b"chunked")
    )
    parts = [body[: len(body) // 3], body[len(body) // 3 : 2 * len(body) // 3]]
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": part, "more_body": True} for part in parts
    ]
    messages.append({"type": "http.disconnect"})

    async def receive() -> dict[str, Any]:
        # After the hang-up, every further receive says so again (as a server does).
        return messages.pop(0) if len(messages) > 1 else messages[0]

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"{API}/sessions/{session_id}/scenarios",
        "raw_path": f"{API}/sessions/{session_id}/scenarios".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 12345),
        "server": ("testserver", 80),
    }
    with caplog.at_level(logging.WARNING):
        await app(scope, receive, send)
    assert await scenario_count(service_db, alice) == 0
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR], caplog.text
    # The request reached its body (a refusal before it, a 401 say, would have been answered), and
    # nobody being left to answer, nothing was.
    assert sent == [], sent
