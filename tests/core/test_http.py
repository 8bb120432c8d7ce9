"""Probes, problem+json for every framework error, request ids, body limits."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from service.core.errors import ServiceUnavailable
from tests.conftest import AppFactory, client_for

PROBLEM = "application/problem+json"


class Echo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    size: int


def add_echo_route(app: FastAPI) -> None:
    @app.post("/api/v1/_echo")
    async def echo(body: Echo) -> Echo:
        return body


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


async def test_health_answers_without_touching_the_database(app_factory: AppFactory) -> None:
    # A closed port: /health must not care.
    async with app_factory(database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none") as app:
        async with client_for(app) as client:
            response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


@pytest.mark.parametrize("database", ["refused", "silent"])
async def test_ready_is_503_quickly_when_database_is_down(app_factory: AppFactory, database: str) -> None:
    """Refused (a closed port) or silent (a server that accepts and never says a word): either way
    /ready answers 503 by its own timeout, never waiting on the database for good."""
    with _silent_server() as port:
        if database == "refused":
            port = 1
        async with app_factory(database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{port}/none") as app:
            async with client_for(app) as client:
                async with asyncio.timeout(30):  # a hang guard, not a measurement
                    response = await client.get("/ready")
    assert_problem(response, 503)
    assert response.headers["retry-after"]


@contextlib.contextmanager
def _silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers them."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


async def test_unknown_route_is_problem_404(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/no/such/route"), 404)
    assert body["title"] == "Not Found"


async def test_wrong_method_is_problem_405(client: httpx.AsyncClient) -> None:
    response = await client.delete("/health")
    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]


async def test_validation_error_is_problem_422_with_errors(app: FastAPI, client: httpx.AsyncClient) -> None:
    add_echo_route(app)
    response = await client.post("/api/v1/_echo", json={"name": "x", "size": "big", "extra": 1})
    body = assert_problem(response, 422)
    errors = body["errors"]
    assert isinstance(errors, list)
    locations = {tuple(e["loc"]) for e in errors}
    assert ("body", "size") in locations and ("body", "extra") in locations
    assert all("input" not in e for e in errors)  # the input is never echoed back


async def test_invalid_json_is_422(app: FastAPI, client: httpx.AsyncClient) -> None:
    add_echo_route(app)
    response = await client.post(
        "/api/v1/_echo", content=b'{"name": "x", ', headers={"content-type": "application/json"}
    )
    assert_problem(response, 422)


async def test_non_json_body_is_415(app: FastAPI, client: httpx.AsyncClient) -> None:
    add_echo_route(app)
    response = await client.post("/api/v1/_echo", content=b"name=x", headers={"content-type": "text/plain"})
    assert_problem(response, 415)
    ok = await client.post("/api/v1/_echo", json={"name": "x", "size": 1})
    assert ok.status_code == 200


async def test_body_over_limit_with_content_length_is_413_before_reading(app_factory: AppFactory) -> None:
    async with app_factory(max_body_bytes=1024) as app:
        add_echo_route(app)
        async with client_for(app) as client:
            response = await client.post(
                "/api/v1/_echo", content=b"x" * 4096, headers={"content-type": "application/json"}
            )
    assert_problem(response, 413)


async def test_streamed_body_over_limit_is_cut_off_early(app_factory: AppFactory) -> None:
    """A 1 GB body without Content-Length is refused after about the limit, not buffered."""
    chunk = b" " * 65536
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(16384):  # 1 GiB if nobody stops reading
            sent += len(chunk)
            yield chunk

    async with app_factory(max_body_bytes=1024 * 1024) as app:
        add_echo_route(app)
        async with client_for(app) as client:
            response = await client.post(
                "/api/v1/_echo", content=endless(), headers={"content-type": "application/json"}
            )
    assert_problem(response, 413)
    assert "content-length" not in response.request.headers
    assert sent <= 2 * 1024 * 1024
    # Without it, a real server would read and discard the rest of the gigabyte.
    assert response.headers["connection"] == "close"


async def test_request_id_is_generated(client: httpx.AsyncClient) -> None:
    first = (await client.get("/health")).headers["x-request-id"]
    second = (await client.get("/health")).headers["x-request-id"]
    assert first and second and first != second


async def test_sane_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "trace-abc.123"})
    assert response.headers["x-request-id"] == "trace-abc.123"


@pytest.mark.parametrize("offered", ["x" * 129, "has space", "tab\there", "ünïcode"])
async def test_insane_request_id_is_replaced(client: httpx.AsyncClient, offered: str) -> None:
    response = await client.get("/health", headers={"X-Request-ID": offered.encode("utf-8")})
    assert response.headers["x-request-id"] != offered
    assert len(response.headers["x-request-id"]) == 32


async def test_errors_carry_request_id_too(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere", headers={"X-Request-ID": "abc"})
    assert response.status_code == 404
    assert response.headers["x-request-id"] == "abc"


async def test_non_ascii_digit_content_length_is_a_400_not_a_500() -> None:
    """str.isdigit() accepts "²"; the limit must not crash on it (servers usually refuse it first)."""
    from service.core.middleware import BodyLimitMiddleware

    async def never_called(scope: object, receive: object, send: object) -> None:
        raise AssertionError("the app must not run")

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/sessions",
        "headers": [(b"content-length", "²".encode()), (b"content-type", b"application/json")],
    }
    await BodyLimitMiddleware(never_called, max_body_bytes=1024)(scope, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 400


async def test_an_unexpected_error_is_a_problem_500_with_the_request_id(app: FastAPI) -> None:
    @app.get("/api/v1/_boom")
    async def boom() -> None:
        raise RuntimeError("a bug of ours")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/api/v1/_boom", headers={"X-Request-ID": "trace-500"})
    body = assert_problem(response, 500)
    assert "a bug of ours" not in str(body)
    assert response.headers["x-request-id"] == "trace-500"


async def test_ready_is_503_not_500_for_a_url_the_driver_rejects(app_factory: AppFactory) -> None:
    async with app_factory(
        database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none?bogus_option=1"
    ) as app:
        async with client_for(app) as client:
            response = await client.get("/ready")
    assert_problem(response, 503)


def test_every_503_says_when_to_retry() -> None:
    assert ServiceUnavailable().response().headers["retry-after"] == "5"
    assert ServiceUnavailable(headers={"Retry-After": "60"}).response().headers["retry-after"] == "60"


async def test_405_allows_every_method_the_path_serves(client: httpx.AsyncClient) -> None:
    # Starlette alone names only the first matching route's methods (`Allow: POST` here).
    expected = {
        "/api/v1/sessions": "GET, POST",
        f"/api/v1/sessions/{uuid.uuid4()}": "DELETE, GET, PATCH",
        f"/api/v1/scenarios/{uuid.uuid4()}/solutions": "GET, POST",
        "/api/v1/users/me": "GET",
    }
    for path, allow in expected.items():
        response = await client.request("OPTIONS", path)
        assert response.status_code == 405, path
        assert response.headers["allow"] == allow, path
        assert response.headers["content-type"] == PROBLEM
