"""A client that sends part of a body and hangs up is not a server error (a real server, raw sockets).

Anyone can do this to the webhook receivers, without credentials: it must be one INFO line with the
request id, status 499 in the access log, no traceback, nothing written — and the server goes on.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import text

from service.config import Settings
from service.providers.dev import DevIssuer
from tests.kit.server import RunningServer
from tests.kit.sql import SqlAdmin
from tests.kit.waiting import eventually
from tests.webhooks.conftest import CLERK, clerk_signed, clerk_user_event, ledger_count

DECLARED = 10_000


def dev_token(server: RunningServer, settings: Settings) -> str:
    issuer = DevIssuer.load_or_create(settings.dev_key_path, settings.dev_issuer)
    return issuer.mint(subject=f"leaver-{uuid.uuid4().hex[:8]}", email="leaver@example.com")


async def leave_mid_body(server: RunningServer, path: str, request_id: str, headers: dict[str, str]) -> None:
    """Headers with a Content-Length, half of the body, then close the socket."""
    _, writer = await server.connect()
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"Content-Length: {DECLARED}", f"X-Request-ID: {request_id}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(
        ("\r\n".join(lines) + "\r\n\r\n").encode() + b'{"name": "half", "request": {"a": "' + b"x" * 4000
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def scenario_count(db: SqlAdmin) -> int:
    async with db.transaction() as session:
        return int((await session.execute(text("SELECT count(*) FROM scenarios"))).scalar_one())


@pytest.mark.parametrize(
    "target",
    ["webhook", "scenario", "pydantic-body"],
    ids=["webhook-no-credentials", "scenario-document", "fastapi-parsed-body"],
)
async def test_a_client_that_leaves_mid_body_is_one_info_line_and_a_499(
    shared_server: RunningServer, clean_db: SqlAdmin, settings: Settings, target: str
) -> None:
    server = shared_server
    headers: dict[str, str] = {}
    path = CLERK
    if target != "webhook":
        token = dev_token(server, settings)
        async with httpx.AsyncClient(base_url=server.url("")) as http:
            auth = {"Authorization": f"Bearer {token}"}
            session = await http.post("/api/v1/sessions", json={"name": "leavers"}, headers=auth)
            assert session.status_code == 201, session.text
        headers = auth
        # /dev/token's body is a declared pydantic model: FastAPI reads it, and turns the
        # disconnect into a 400 of its own that nobody receives.
        path = f"/api/v1/sessions/{session.json()['id']}/scenarios" if target == "scenario" else "/dev/token"
    request_id = f"leaver-{uuid.uuid4().hex}"

    await leave_mid_body(server, path, request_id, headers)

    async def finished() -> bool:
        return bool(server.access(request_id))

    await eventually(finished, timeout=30)
    [access] = server.access(request_id)
    assert access["status"] == 499 and access["level"] == "INFO"
    [note] = [r for r in server.with_request_id(request_id) if r.get("logger") != "routebook.access"]
    assert note["level"] == "INFO" and "closed the connection" in note["msg"] and "exc" not in note
    assert not [r for r in server.records() if r.get("level") in {"ERROR", "CRITICAL"} or "exc" in r]
    assert "Traceback" not in server.log_text()
    assert await ledger_count(clean_db) == 0
    assert await scenario_count(clean_db) == 0

    # The server goes on serving, and a complete delivery is applied.
    body, signed = clerk_signed(clerk_user_event(f"user_{uuid.uuid4().hex[:8]}"))
    async with httpx.AsyncClient(base_url=server.url("")) as http:
        delivered = await http.post(CLERK, content=body, headers=signed)
    assert delivered.status_code == 204, delivered.text
    assert await ledger_count(clean_db) == 1
