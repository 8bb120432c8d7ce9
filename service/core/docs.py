"""Swagger UI at /docs, served entirely from this process: no CDN, so it also works offline.

The assets (Swagger UI 5, which renders OpenAPI 3.1) are the ones the `fastapi-offline` package ships;
only its static directory is used, the app stays a plain FastAPI. FastAPI's default page would load
them from a CDN and show a blank page without internet. Swagger UI's online validator badge (another
outside request, carrying the document's URL) is switched off, and a Content-Security-Policy keeps
the page to its own origin, so nothing it loads can come from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"

# The page's one inline script starts Swagger UI; Swagger UI sets inline styles and data: images.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)


def install_docs(app: FastAPI) -> None:
    """GET /docs and its assets under /docs/assets (both left out of the OpenAPI document)."""
    assert app.openapi_url is not None
    openapi_url = app.openapi_url
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        # Paths, never absolute URLs: an absolute one would be built from the client's Host header.
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - API documentation",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=None,
            swagger_ui_parameters={
                # The Bearer token from Authorize survives a reload (kept in this origin's storage).
                "persistAuthorization": True,
                "validatorUrl": None,
            },
        )
        page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return page
