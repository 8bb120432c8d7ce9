"""docs/api.md, the API reference users read, keeps up with the routes: every operation of the
OpenAPI document has a heading there, and every operation a heading names is one the service serves.

An operation is named in a heading as a code span, `METHOD /path` with the path exactly as in the
OpenAPI document (e.g. "#### `GET /api/v1/sessions/{session_id}`"); a mention in running text does
not count, so the reference cannot pass by naming a route in passing without describing it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.routing import Route

from service.config import Settings
from service.main import create_app

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "api.md"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_HEADING = re.compile(r"^#{1,6} ", re.MULTILINE)
_OPERATION = re.compile(rf"`({'|'.join(METHODS)}) (/[^`\s]*)`")

Operation = tuple[str, str]


def headed_operations(markdown: str) -> set[Operation]:
    """The `METHOD /path` code spans in the document's headings (fenced code blocks are not text)."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    found: set[Operation] = set()
    for line in prose.splitlines():
        if _HEADING.match(line):
            found.update((method, path) for method, path in _OPERATION.findall(line))
    return found


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    # Every optional part mounted (the dev issuer's routes come with `dev`); building the app and
    # its OpenAPI document needs no database.
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment="test",
        database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none",
        auth_providers=["dev"],
        data_dir=tmp_path_factory.mktemp("data"),
    )
    return create_app(settings)


def documented_in_openapi(app: FastAPI) -> set[Operation]:
    paths = app.openapi()["paths"]
    return {(method.upper(), path) for path, operations in paths.items() for method in operations}


def served(app: FastAPI) -> set[Operation]:
    """Every method and path a route answers, those left out of the OpenAPI document included."""
    return {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route) and route.methods
        for method in route.methods
    }


def test_every_operation_of_the_openapi_document_has_a_heading_in_the_reference(app: FastAPI) -> None:
    missing = documented_in_openapi(app) - headed_operations(REFERENCE.read_text())
    assert not missing, (
        f"docs/api.md has no heading for {sorted(missing)}: describe each "
        "(who may call it, body, answer, statuses, a curl example) under a heading naming `METHOD /path`"
    )


def test_every_operation_the_reference_heads_is_served(app: FastAPI) -> None:
    stale = headed_operations(REFERENCE.read_text()) - served(app)
    assert not stale, f"docs/api.md describes operations the service does not serve: {sorted(stale)}"


def test_the_reference_covers_the_pages_outside_the_openapi_document(app: FastAPI) -> None:
    # /docs and /openapi.json are not operations of the document, but users need them.
    headed = headed_operations(REFERENCE.read_text())
    assert {("GET", "/docs"), ("GET", "/openapi.json")} <= headed & served(app)


def test_only_headings_count_as_describing_an_operation() -> None:
    markdown = "\n".join(
        [
            "## Sessions",
            "#### `GET /api/v1/sessions/{session_id}`",
            "Rename it with `PATCH /api/v1/sessions/{session_id}`.",
            "```sh",
            "# `DELETE /api/v1/sessions/{session_id}` in a shell comment",
            "```",
            "### `POST /api/v1/sessions` and `GET /api/v1/sessions`",
        ]
    )
    assert headed_operations(markdown) == {
        ("GET", "/api/v1/sessions/{session_id}"),
        ("POST", "/api/v1/sessions"),
        ("GET", "/api/v1/sessions"),
    }
