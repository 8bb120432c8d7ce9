"""The OpenAPI document, made to tell the truth about what the service sends.

- Bearer auth is declared once for the protected operations (rather than a `Security(HTTPBearer())`
  parameter, which would parse the header again on every request; the gate reads it).
- Every error is `application/problem+json` (RFC 9457): routes list the statuses they can answer with
  `problem_responses(...)`, and 422 is documented as the problem the handlers render, not FastAPI's
  `HTTPValidationError`.
- The statuses that come from the shared layers rather than from a route are added here, once, for
  every operation they can reach: the gate's 401 (`WWW-Authenticate`), 403 (a cookie request from an
  origin not allowed, on unsafe methods) and 503 (keys or database unavailable); the body limits' 413
  and, under /api, 415. Every 503 carries `Retry-After`, every response `X-Request-ID`.

tests/foundation/test_api_conformance.py holds the service to this document with schemathesis.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from service.core.errors import PROBLEM_JSON

BEARER = "BearerAuth"
API_PREFIX = "/api/"
UNPROTECTED_PREFIXES = ("/api/v1/webhooks/",)
# Methods whose body the body-limit middleware reads (413; 415 under API_PREFIX), and those a
# cookie-authenticated caller must send from an allowed Origin (403).
BODY_METHODS = frozenset({"post", "put", "patch"})
UNSAFE_METHODS = frozenset({"post", "put", "patch", "delete"})

HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "This request's id: the client's own when it sent a sane one, else a new one.",
        "required": True,
        "schema": {"type": "string"},
    },
    "WWW-Authenticate": {
        "description": '`Bearer`, or `Bearer error="invalid_token"` when a token was sent.',
        "required": True,
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
}

DESCRIPTIONS: dict[int, str] = {
    400: "The request could not be understood",
    401: "Missing, invalid or expired token (`WWW-Authenticate: Bearer`)",
    403: "Valid token without the required role, or a cookie request from an origin not allowed",
    404: "No such resource, or another user's (indistinguishable)",
    406: "The resource cannot be represented as the request asked (`Accept`, `format`)",
    409: "The resource is not in a state that allows this",
    412: "`If-Match` does not match the current ETag",
    413: "Body larger than the server accepts",
    415: "Body is not JSON",
    422: "The request is not valid (`errors` says where)",
    429: "Too many requests of this kind are active (`Retry-After`)",
    503: "A dependency (database, identity provider keys) is unavailable, or the service is busy (`Retry-After`)",
}


class Problem(BaseModel):
    """An RFC 9457 problem."""

    type: str = "about:blank"
    title: str = Field(examples=["Not Found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["The requested resource was not found."])


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="Where: body, query, path or header, then the member path")
    msg: str
    type: str
    pointer: str | None = Field(
        default=None,
        description=(
            "A JSON pointer: into the scenario's request (solve validation), or into the body "
            "(webhook endpoints)"
        ),
    )
    line: int | None = Field(
        default=None,
        description="An imported file's line, from 1 as an editor numbers them (the CSV header is line 1); "
        "null when the file as a whole is at fault (a missing section)",
    )


class ValidationProblem(Problem):
    errors: list[ValidationIssue]


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status as a problem+json with its description."""
    return {
        status: {
            "description": DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
            "content": {PROBLEM_JSON: {}},
        }
        for status in statuses
    }


_ETAG_HEADER = {
    "ETag": {
        "description": 'The version to send back in `If-Match`, e.g. `"3"`.',
        "required": True,
        "schema": {"type": "string"},
    }
}
_LOCATION_HEADER = {
    "Location": {
        "description": "The new resource's path, e.g. `/api/v1/sessions/{id}`.",
        "required": True,
        "schema": {"type": "string"},
    }
}
# Every route on a resource: a token, the database; the ones with a body add 413/415/422.
READ_PROBLEMS = problem_responses(401, 404, 422, 503)
WRITE_PROBLEMS = problem_responses(401, 404, 413, 415, 422, 503)
STALE_PROBLEM = problem_responses(412)
# A viewer's write in a workspace.
ROLE_PROBLEM = problem_responses(403)


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI (`openapi_extra`) for a body read by a dependency rather than a body parameter."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    # Its nested models are named in the components by the responses that use them; left here,
    # client generators read `$defs` as a member of the body.
    schema.pop("$defs", None)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def created(description: str) -> dict[int | str, dict[str, Any]]:
    """A 201 with the new resource's ETag and Location."""
    return {201: {"description": description, "headers": {**_ETAG_HEADER, **_LOCATION_HEADER}}}


def located(description: str) -> dict[int | str, dict[str, Any]]:
    """A 201 with the new resource's Location, for a resource without versions (no ETag)."""
    return {201: {"description": description, "headers": dict(_LOCATION_HEADER)}}


def ok(description: str) -> dict[int | str, dict[str, Any]]:
    """A 200 with the resource's ETag."""
    return {200: {"description": description, "headers": _ETAG_HEADER}}


def _schema_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _describe_problems(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (Problem, ValidationIssue, ValidationProblem):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    # FastAPI's own 422 models describe a body this service never sends.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if not str(status).isdigit() or int(status) < 400:
                    continue
                code = int(status)
                name = "ValidationProblem" if code == 422 else "Problem"
                # The example of the status itself (the schema's own examples are a 404's).
                example: dict[str, Any] = {
                    "type": "about:blank",
                    "title": HTTPStatus(code).phrase,
                    "status": code,
                    "detail": DESCRIPTIONS.get(code, HTTPStatus(code).phrase),
                }
                if code == 422:
                    example["errors"] = [
                        {"loc": ["body", "name"], "msg": "Field required", "type": "missing"}
                    ]
                response["content"] = {PROBLEM_JSON: {"schema": _schema_ref(name), "example": example}}
                response.setdefault("description", DESCRIPTIONS.get(code, ""))


def _header_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


def _add_status(operation: dict[str, Any], status: int) -> dict[str, Any]:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    response: dict[str, Any] = responses.setdefault(str(status), problem_responses(status)[status])
    return response


def _describe_shared_statuses(path: str, method: str, operation: dict[str, Any]) -> None:
    """The statuses the gate and the middleware answer with, on every operation they guard."""
    if path.startswith(API_PREFIX) and not path.startswith(UNPROTECTED_PREFIXES):
        operation.setdefault("security", [{BEARER: []}])
        _add_status(operation, 401).setdefault("headers", {})["WWW-Authenticate"] = _header_ref(
            "WWW-Authenticate"
        )
        _add_status(operation, 503)
        if method in UNSAFE_METHODS:
            _add_status(operation, 403)
    if method in BODY_METHODS:
        _add_status(operation, 413)
        if path.startswith(API_PREFIX):
            _add_status(operation, 415)


def _describe_headers(document: dict[str, Any]) -> None:
    document.setdefault("components", {})["headers"] = HEADERS
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                headers = response.setdefault("headers", {})
                headers["X-Request-ID"] = _header_ref("X-Request-ID")
                if status in ("429", "503"):
                    headers["Retry-After"] = _header_ref("Retry-After")


def _add_schemas(document: dict[str, Any], models: Sequence[type[BaseModel]]) -> None:
    """Named schemas no operation's body holds, which descriptions link to (`#/components/schemas/X`)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        schemas[model.__name__] = schema


# `openapi_extra` of a route whose parameters cannot fail validation (a free-form path segment):
# FastAPI documents a 422 for every route with parameters; this one can never send it.
NO_VALIDATION_ERRORS: dict[str, Any] = {"x-no-validation-errors": True}


def install_openapi(app: FastAPI, *, schemas: Sequence[type[BaseModel]] = ()) -> None:
    """`schemas`: models to name in the document beside those the operations use."""

    def schema() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        document.setdefault("components", {}).setdefault("securitySchemes", {})[BEARER] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token from the identity provider (or the dev issuer's /dev/token).",
        }
        for path, operations in document.get("paths", {}).items():
            for method, operation in operations.items():
                if operation.pop("x-no-validation-errors", False):
                    operation.get("responses", {}).pop("422", None)
                _describe_shared_statuses(path, method, operation)
        _describe_problems(document)
        _describe_headers(document)
        _add_schemas(document, schemas)
        app.openapi_schema = document
        return document

    app.openapi = schema  # type: ignore[method-assign]
