"""Every error the framework or the app raises, rendered as RFC 9457 application/problem+json."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from service.core.db import classify
from service.core.errors import AppError, problem_response
from service.core.observability import request_id_var

log = logging.getLogger("routebook.errors")


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Only where and what: the offending input may be large or sensitive, so it is not echoed.
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}
        for error in exc.errors()
    ]


async def _app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    return exc.response()


# The methods a 405's Allow may list (OPTIONS is never routed: CORS preflights end in the middleware).
_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str | None:
    """Every method some route serves at this path. Starlette's own 405 names only the methods of
    the first route whose path matched, so `OPTIONS /api/v1/sessions` said `Allow: POST` though GET is
    served there too (RFC 9110 §10.2.1: Allow lists the methods the resource supports). Asked of the
    routes by method, through `matches`, since FastAPI nests included routers' routes."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    ]
    if not allowed or len(allowed) == len(_METHODS):
        # Nothing routed here, or a mount (static files) that takes every method to its own app,
        # which then names its own: leave that Allow as it is.
        return None
    return ", ".join(allowed)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    headers = dict(exc.headers or {})
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No resource exists at this path."
    if exc.status_code == 405:
        detail = f"{request.method} is not allowed on this path."
        allowed = _allowed_methods(request)
        if allowed:
            headers = {name: value for name, value in headers.items() if name.lower() != "allow"}
            headers["Allow"] = allowed
    return problem_response(exc.status_code, detail or "The request failed.", headers=headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return problem_response(422, "The request is not valid.", errors=_validation_errors(exc))


async def _unexpected(request: Request, exc: Exception) -> Response:
    # This handler runs outside the middleware (which already reset the request id), so it stamps
    # the id itself, from the scope.
    request_id = getattr(request.state, "request_id", None)
    token = request_id_var.set(request_id)
    try:
        unavailable = classify(exc)
        if unavailable is not None:
            # A database failure that escaped a transaction block: the client may retry, so 503.
            log.warning(
                "database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__
            )
            response = unavailable().response()
        else:
            log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
            response = problem_response(500, "The server could not complete the request.")
    finally:
        request_id_var.reset(token)
    if request_id:
        response.headers["X-Request-ID"] = request_id
    return response


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
