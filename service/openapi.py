"""The OpenAPI document, made to tell the truth about what the service sends.

- Bearer auth is declared once for the protected operations (rather than a `Security(HTTPBearer())`
  parameter, which would parse the header again on every request; the gate reads it).
- Every error is `application/problem+json` (RFC 9457): routes list the statuses they can answer with
  `problem_responses(...)`, and 422 is documented as the problem the handlers render, not FastAPI's
  `HTTPValidationError`.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from service.errors import PROBLEM_JSON

BEARER = "BearerAuth"
UNPROTECTED_PREFIXES = ("/api/v1/webhooks/",)

DESCRIPTIONS: dict[int, str] = {
    400: "The request could not be understood",
    401: "Missing, invalid or expired token (`WWW-Authenticate: Bearer`)",
    403: "Valid token without the required role, or a cookie request from an origin not allowed",
    404: "No such resource, or another user's (indistinguishable)",
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
        default=None, description="A JSON pointer into the scenario's request (solve validation)"
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
                name = "ValidationProblem" if int(status) == 422 else "Problem"
                response["content"] = {PROBLEM_JSON: {"schema": _schema_ref(name)}}
                response.setdefault("description", DESCRIPTIONS.get(int(status), ""))


def install_openapi(app: FastAPI) -> None:
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
            if not path.startswith("/api/") or path.startswith(UNPROTECTED_PREFIXES):
                continue
            for operation in operations.values():
                operation.setdefault("security", [{BEARER: []}])
                operation.setdefault("responses", {}).setdefault("401", problem_responses(401)[401])
        _describe_problems(document)
        app.openapi_schema = document
        return document

    app.openapi = schema  # type: ignore[method-assign]
