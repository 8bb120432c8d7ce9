"""Every error the framework or the app raises, rendered as RFC 9457 application/problem+json."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from service.errors import AppError, ServiceUnavailable, problem_response
from service.observability import request_id_var

log = logging.getLogger("routebook.errors")

# Failures to reach PostgreSQL: the client did nothing wrong and may retry, so 503, not 500.
DATABASE_DOWN: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Only where and what: the offending input may be large or sensitive, so it is not echoed.
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}
        for error in exc.errors()
    ]


async def _app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No resource exists at this path."
    if exc.status_code == 405:
        detail = f"{request.method} is not allowed on this path."
    return problem_response(exc.status_code, detail or "The request failed.", headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return problem_response(422, "The request is not valid.", errors=_validation_errors(exc))


async def _database_down(request: Request, exc: Exception) -> Response:
    log.warning("database unavailable: %s", type(exc).__name__)
    return ServiceUnavailable("The database is unavailable; try again shortly.").response()


async def _unexpected(request: Request, exc: Exception) -> Response:
    request_id = getattr(request.state, "request_id", None)
    token = request_id_var.set(request_id)  # this handler runs after the middleware reset it
    try:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    finally:
        request_id_var.reset(token)
    headers = {"X-Request-ID": request_id} if request_id else None
    return problem_response(500, "The server could not complete the request.", headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for exc_type in DATABASE_DOWN:
        app.add_exception_handler(exc_type, _database_down)
    app.add_exception_handler(Exception, _unexpected)
