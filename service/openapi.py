"""OpenAPI extras: Bearer auth declared once for the protected operations.

Declaring it here rather than as a `Security(HTTPBearer())` parameter keeps an extra dependency
(and its header parsing) off every request; the gate in `service.auth.deps` reads the header.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

BEARER = "BearerAuth"
UNPROTECTED_PREFIXES = ("/api/v1/webhooks/",)


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
                operation.setdefault("responses", {}).setdefault(
                    "401",
                    {
                        "description": "Missing, invalid or expired token",
                        "content": {"application/problem+json": {}},
                    },
                )
        app.openapi_schema = document
        return document

    app.openapi = schema  # type: ignore[method-assign]
