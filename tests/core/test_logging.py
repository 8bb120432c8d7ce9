"""Logs carry the request id, and never a token, a cookie or a request body."""

from __future__ import annotations

import logging

import httpx
import orjson
import pytest
from fastapi import FastAPI

from service.core.observability import JsonFormatter
from service.deps import app_state


async def test_logs_never_contain_credentials_or_bodies(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    token = app_state(app).dev_issuer.mint(subject="logged", email="l@example.com")
    forged = token[:-6] + "AAAAAA"
    caplog.set_level(logging.DEBUG)
    await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {token}", "X-Request-ID": "req-1"}
    )
    await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {forged}"})
    client.cookies.set("__session", "COOKIE-SECRET-VALUE")
    await client.post(
        "/dev/token",
        json={"email": "BODY-SECRET@example.com"},
        headers={"Authorization": "Bearer HEADER-SECRET"},
    )
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    text = "\n".join(lines)
    assert "routebook.access" in text  # the access log did run
    for secret in (token, token.split(".")[2], forged, "COOKIE-SECRET-VALUE", "BODY-SECRET", "HEADER-SECRET"):
        assert secret not in text
    access = [orjson.loads(line) for line in lines if '"routebook.access"' in line]
    assert any(entry.get("request_id") == "req-1" for entry in access)
