"""Domain errors carry their HTTP status; one set of handlers renders RFC 9457 problem+json."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson
from starlette.responses import Response

from service.core import metrics

PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    """An error with a status and a client-safe detail; its title is the status phrase."""

    status: int = 500
    detail: str = "The server could not complete the request."

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if detail is not None:
            self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        super().__init__(self.detail)

    def response(self) -> Response:
        return problem_response(self.status, self.detail, headers=self.headers, **self.extra)


class BadRequest(AppError):
    status = 400
    detail = "The request could not be understood."


class Unauthorized(AppError):
    status = 401
    detail = "Authentication is required to access this resource."


class Forbidden(AppError):
    status = 403
    detail = "You do not have permission to perform this action."


class NotFound(AppError):
    status = 404
    detail = "The requested resource was not found."


class NotAcceptable(AppError):
    status = 406
    detail = "The resource cannot be represented in the media type the request asked for."


class Conflict(AppError):
    status = 409
    detail = "The request conflicts with the current state of the resource."


class PreconditionFailed(AppError):
    status = 412
    detail = "The resource has changed since it was read (If-Match does not match)."


class PayloadTooLarge(AppError):
    status = 413
    detail = "The request body is larger than this server accepts."


class UnsupportedMediaType(AppError):
    status = 415
    detail = "The request body must be JSON (Content-Type: application/json)."


class ValidationFailed(AppError):
    status = 422
    detail = "The request is not valid."

    def __init__(self, errors: Sequence[Mapping[str, Any]], detail: str | None = None) -> None:
        super().__init__(detail, extra={"errors": [dict(e) for e in errors]})

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in an offload worker process (service/core/offload.py) and re-raised here: pickled by
        # its own arguments, not by Exception's (which would pass the detail as the errors).
        return (type(self), (self.extra["errors"], self.detail))


class ServiceUnavailable(AppError):
    """Always with `Retry-After` (the OpenAPI document promises it on every 503): the given one, else a
    default."""

    status = 503
    detail = "A service this request depends on is unavailable; try again shortly."
    retry_after_seconds = 5
    # What was unavailable, for the metrics of 503s (a short fixed word, never from input).
    cause = "other"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
        cause: str | None = None,
    ) -> None:
        super().__init__(
            detail, headers={"Retry-After": str(self.retry_after_seconds), **(headers or {})}, extra=extra
        )
        if cause is not None:
            self.cause = cause

    def response(self) -> Response:
        metrics.unavailable(self.cause)
        return super().response()


def problem_response(
    status: int, detail: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return Response(
        orjson.dumps(body, default=str),
        status_code=status,
        headers=dict(headers or {}),
        media_type=PROBLEM_JSON,
    )
