"""What the OpenAPI document promises, read from the document itself; test_api_conformance.py then
holds the service to it. Here: the shapes every operation shares, and the timestamps' one format."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from service.core.timestamps import PATTERN, Timestamp
from service.deps import app_state
from tests.planning.conftest import Caller, sign_in

PROBLEM = "application/problem+json"
API = "/api/v1"
PROTECTED = re.compile(r"^/api/(?!v1/webhooks/)")


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in document["paths"].items() for method, op in ops.items()]


def test_every_error_is_a_problem_and_422_carries_errors(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert "errors" in schemas["ValidationProblem"]["required"]
    seen_422 = 0
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            assert list(response["content"]) == [PROBLEM], (method, path, status)
            expected = "ValidationProblem" if status == "422" else "Problem"
            assert response["content"][PROBLEM]["schema"] == {"$ref": f"#/components/schemas/{expected}"}
            seen_422 += status == "422"
    assert seen_422 > 10


def test_the_gate_and_the_body_limits_are_documented_where_they_answer(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        responses = operation["responses"]
        where = (method, path)
        if PROTECTED.match(path):
            assert operation["security"] == [{"BearerAuth": []}], where
            assert "WWW-Authenticate" in responses["401"]["headers"], where
            assert "503" in responses, where
            if method in ("post", "put", "patch", "delete"):
                # A Clerk `__session` cookie on an unsafe request needs an allowed Origin.
                assert "403" in responses, where
        else:
            assert "security" not in operation, where
        if method in ("post", "put", "patch"):
            assert "413" in responses, where
            if path.startswith("/api/"):
                assert "415" in responses, where
    webhook = document["paths"][f"{API}/webhooks/{{provider}}"]["post"]["responses"]
    assert {"204", "400", "401", "404", "413", "415", "503"} <= set(webhook)


# Resources without versions, so without an ETag: a webhook endpoint is never edited (only its
# secret rotated, or the endpoint deleted), and no route of it takes If-Match; nor does any route of
# a workspace (its members are set by PUT, which needs no version: the role sent is the whole state).
UNVERSIONED = {f"{API}/webhook-endpoints", f"{API}/workspaces"}


def test_response_headers_are_documented_where_they_are_sent(document: dict[str, Any]) -> None:
    headers = document["components"]["headers"]
    assert headers["Retry-After"]["required"] and headers["X-Request-ID"]["required"]
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            where = (method, path, status)
            assert response["headers"]["X-Request-ID"] == {"$ref": "#/components/headers/X-Request-ID"}, where
            if status in ("429", "503"):
                assert response["headers"]["Retry-After"] == {"$ref": "#/components/headers/Retry-After"}
            if status == "201":
                assert response["headers"]["Location"]["required"], where
                if path not in UNVERSIONED:
                    assert "ETag" in response["headers"], where
    scenario = document["paths"][f"{API}/scenarios/{{scenario_id}}"]
    assert scenario["get"]["responses"]["200"]["headers"]["ETag"]["required"]
    assert scenario["patch"]["responses"]["200"]["headers"]["ETag"]["required"]


def test_each_operation_is_listed_once_under_one_tag(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    for method, path, operation in operations(document):
        assert len(operation.get("tags", [])) == 1, (method, path, operation.get("tags"))
    admin = [(m, p) for m, p, _ in operations(document) if p == f"{API}/admin/users"]
    assert admin == [("get", f"{API}/admin/users")]
    assert document["paths"][f"{API}/admin/users"]["get"]["tags"] == ["admin"]


def test_request_bodies_never_document_null_where_the_routes_refuse_it(document: dict[str, Any]) -> None:
    bodies = {
        (method, path): operation["requestBody"]["content"]["application/json"]["schema"]
        for method, path, operation in operations(document)
        if path.startswith(API) and "application/json" in operation.get("requestBody", {}).get("content", {})
    }
    assert len(bodies) == 10
    # The one body that is not JSON: a scenario import takes a file, as text.
    files = [
        (path, sorted(operation["requestBody"]["content"]))
        for method, path, operation in operations(document)
        if path.startswith(API) and (method, path) not in bodies and "requestBody" in operation
    ]
    assert files == [(f"{API}/sessions/{{session_id}}/scenarios/import", ["text/csv", "text/plain"])]
    for where, schema in bodies.items():
        for member, definition in schema["properties"].items():
            assert "anyOf" not in definition and definition.get("type") != "null", (where, member)
            if not where[1].endswith("/solve"):  # solve options are optional with real defaults
                assert "default" not in definition, (where, member)
    # A name is never only whitespace (it is stripped first).
    name = bodies[("post", f"{API}/sessions")]["properties"]["name"]
    assert re.search(name["pattern"], "   ") is None and re.search(name["pattern"], " a ")


def test_every_timestamp_is_documented_with_its_one_format(document: dict[str, Any]) -> None:
    stamps = [
        (name, member, definition)
        for name, schema in document["components"]["schemas"].items()
        for member, definition in schema.get("properties", {}).items()
        if definition.get("format") == "date-time"
    ]
    assert {member for _, member, _ in stamps} == {"created_at", "updated_at", "attempted_at", "retry_until"}
    for name, member, definition in stamps:
        assert definition["pattern"] == PATTERN, (name, member)


def test_timestamps_are_written_in_utc_with_z() -> None:
    class Stamped(BaseModel):
        at: Timestamp

    def wire(value: datetime) -> str:
        written: str = orjson.loads(Stamped(at=value).model_dump_json())["at"]
        assert re.fullmatch(PATTERN, written), written
        return written

    berlin = timezone(timedelta(hours=1))
    assert wire(datetime(2026, 12, 2, 10, 30, 0, 5, tzinfo=berlin)) == "2026-12-02T09:30:00.000005Z"
    assert wire(datetime(2026, 12, 2, 9, 30, 0, 120000, tzinfo=UTC)) == "2026-12-02T09:30:00.120000Z"
    assert wire(datetime(2026, 12, 2, 9, 30)) == "2026-12-02T09:30:00Z"  # naive is UTC; no zero fraction


async def test_every_resource_sends_timestamps_in_the_one_format(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    token = app_state(app).dev_issuer.mint(subject="stamps", email="stamps@example.com", roles=["admin"])
    caller = Caller("stamps", uuid.uuid4(), client, {"Authorization": f"Bearer {token}"})
    await sign_in(app, client, "other")
    bodies: list[Any] = [(await caller.call("GET", "/users/me")).json()]
    session = (await caller.call("POST", "/sessions", {"name": "s"})).json()
    scenario = (
        await caller.call("POST", f"/sessions/{session['id']}/scenarios", {"name": "c", "request": {}})
    ).json()
    solution = (
        await caller.call("POST", f"/scenarios/{scenario['id']}/solutions", {"status": "succeeded"})
    ).json()
    bodies += [session, scenario, solution]
    for path in (
        f"/sessions/{session['id']}",
        "/sessions",
        f"/scenarios/{scenario['id']}",
        f"/sessions/{session['id']}/scenarios",
        f"/solutions/{solution['id']}",
        f"/scenarios/{scenario['id']}/solutions",
        "/admin/users",
    ):
        response = await caller.call("GET", path)
        assert response.status_code == 200, (path, response.text)
        bodies.append(response.json())
    bodies.append((await caller.call("PATCH", f"/sessions/{session['id']}", {"name": "t"})).json())

    stamps = list(_timestamps(bodies))
    assert len(stamps) > 20
    for stamp in stamps:
        assert re.fullmatch(PATTERN, stamp), stamp


def _timestamps(value: Any) -> Any:
    if isinstance(value, dict):
        for key, member in value.items():
            if key in ("created_at", "updated_at"):
                yield member
            else:
                yield from _timestamps(member)
    elif isinstance(value, list):
        for item in value:
            yield from _timestamps(item)


def test_the_webhook_receiver_documents_no_validation_error(document: dict[str, Any]) -> None:
    """Its one parameter is a free-form provider name (an unknown one is 404): it never sends a 422."""
    responses = document["paths"]["/api/v1/webhooks/{provider}"]["post"]["responses"]
    assert "422" not in responses and {"204", "400", "401", "404", "413", "503"} <= set(responses)


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    """A schema inlined into an operation (a body read by a dependency) must not keep pydantic's
    local `$defs` and their references: generators of clients refuse the whole document, or type
    `$defs` as a required member of the body."""

    def references(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str):
                    yield value
                else:
                    yield from references(value)
        elif isinstance(node, list):
            for item in node:
                yield from references(item)

    assert '"$defs"' not in orjson.dumps(document["paths"]).decode()
    for reference in set(references(document)):
        assert reference.startswith("#/components/"), reference
        target: Any = document
        for part in reference.removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        assert isinstance(target, dict), reference
