"""Pure-ASGI middleware: request ids and access logs, request metrics, and the body limits (413, 415)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core import metrics
from service.core.errors import (
    AppError,
    BadRequest,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from service.core.headers import header
from service.core.observability import request_id_var

access_log = logging.getLogger("routebook.access")
log = logging.getLogger("routebook.http")

# The access-log status of a request whose client went away before sending all of it (nginx's
# 499 "client closed request"): never sent, and never counted as a server error.
CLIENT_CLOSED_REQUEST = 499

# A client's own id is echoed only when it is a plain token: visible ASCII, at most 128 characters.
_SANE_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def media_type(content_type: str) -> str:
    """`text/csv` of `Text/CSV; charset=utf-8`."""
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(content_type: str) -> bool:
    media = media_type(content_type)
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class RequestContextMiddleware:
    """Gives every response an X-Request-ID and writes one access-log line per request.

    A client that closes the connection mid-request is one INFO line and status 499 in the access
    log: no 500, no traceback (anyone can do it, e.g. to the unauthenticated webhook receivers).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = header(scope, b"x-request-id")
        # 32 random hex digits, as uuid4().hex without building a UUID (a microsecond on every request).
        request_id = offered if offered and _SANE_REQUEST_ID.fullmatch(offered) else os.urandom(16).hex()
        token = request_id_var.set(request_id)
        # Also in the scope: the catch-all 500 handler runs outside this middleware, after the
        # context variable is reset, and must still stamp the id on its response.
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        body_complete = False
        aborted = False
        responded = False

        async def watch_receive() -> Message:
            nonlocal body_complete, aborted
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_complete = True
            elif message["type"] == "http.disconnect" and not body_complete:
                aborted = True
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [
                    *(h for h in message["headers"] if h[0].lower() != b"x-request-id"),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, watch_receive, send_with_id)
        except ClientDisconnect:
            # The client closed the connection before its request was complete (Starlette raises
            # this from request.body()). Nobody is left to answer, nothing was applied: not ours to
            # report as a 500 with a traceback.
            aborted = True
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when TIMEOUT_GRACEFUL_SHUTDOWN is over:
            # the client is told to retry (elsewhere), rather than uvicorn's bare text/plain 500.
            if not responded:
                await ShuttingDown().response()(scope, _no_receive, send_with_id)
            raise
        finally:
            if aborted:
                # Whatever the app made of the truncated body (FastAPI's own body parsing turns it
                # into a 400), no response was delivered.
                status = CLIENT_CLOSED_REQUEST
                log.info("client closed the connection before its request was complete")
            # Path only: no query string, no header, no body reaches the log. Its fields are only
            # worked out when the line is written (LOG_LEVEL above INFO writes none).
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s",
                    scope["method"],
                    scope["path"],
                    extra={"status": status, "duration_ms": round((time.perf_counter() - started) * 1000, 2)},
                )
            request_id_var.reset(token)


# Methods outside this set share one label: a client may send any token as its method.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STATUS_CLASSES = {n: f"{n}xx" for n in range(1, 6)}
REQUEST_METRICS_INTERVAL_S = 1.0


def route_template(scope: Scope) -> str:
    """The route a request matched, as written in the app (`/api/v1/scenarios/{scenario_id}`):
    never the raw path, which holds ids and whatever a client sends."""
    route = scope.get("route")
    if isinstance(route, Mount):
        return f"{route.path}/{{path}}"
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else metrics.UNMATCHED


class MetricsMiddleware:
    """Counts each response by route template, method and status class, and times it.

    Installed only when metrics are on (`create_app`), so a process without them pays nothing here.
    Requests are tallied in plain Python and handed to prometheus-client once a second (and when the
    app shuts down): a scrape may be up to a second behind, a request costs a dictionary update.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        instruments = metrics.instruments()
        assert instruments is not None, "MetricsMiddleware without metrics.record()"
        self._tally = metrics.RequestTally(instruments)
        self._flusher: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._flushing_at_shutdown(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_every_second(), name="request-metrics")
        started = time.perf_counter()
        status = 500  # an exception that escapes is answered 500 by Starlette's outermost handler

        async def send_watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_watched)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self._tally.add(
                route_template(scope),
                method,
                _STATUS_CLASSES.get(status // 100, "other"),
                time.perf_counter() - started,
            )

    async def _flush_every_second(self) -> None:
        while True:
            await asyncio.sleep(REQUEST_METRICS_INTERVAL_S)
            self._tally.flush()

    def _flushing_at_shutdown(self, send: Send) -> Send:
        async def send_flushed(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                if self._flusher is not None:
                    self._flusher.cancel()
                    self._flusher = None
                self._tally.flush()
            await send(message)

        return send_flushed


class ShuttingDown(ServiceUnavailable):
    detail = "The server is shutting down; retry the request."
    cause = "shutting_down"

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": "1", "Connection": "close"})


class BodyTooLarge(HTTPException):
    """Raised from `receive` mid-stream. An HTTPException, so FastAPI's body parsing re-raises it
    (rather than wrapping it in a 400) and the app's handler renders the 413 problem."""

    def __init__(self) -> None:
        # Connection: close — the rest of the body is not read, so the connection cannot be reused;
        # without it the server would drain (read and discard) the whole upload.
        super().__init__(status_code=413, detail=PayloadTooLarge.detail, headers={"connection": "close"})


@dataclass(frozen=True, slots=True)
class BodyRule:
    """A route under the API whose bodies are not JSON (a file upload): the media types it takes
    (any other is a 415) and its own limit."""

    path: re.Pattern[str]
    media_types: frozenset[str]
    max_bytes: int

    def refusal(self) -> UnsupportedMediaType:
        return UnsupportedMediaType(
            f"The request body must be one of: {', '.join(sorted(self.media_types))}."
        )


class BodyLimitMiddleware:
    """Refuses a body over its limit while it streams in (413), and non-JSON bodies on the API (415).

    The limit is `max_body_bytes`, or a smaller one for paths under a prefix in `limits` (webhooks:
    their bodies are small, and anyone may send them) or matching a rule of `rules` (file imports,
    which take other media types than JSON). A declared Content-Length over the limit is refused
    before a byte is read; a chunked body is counted as it arrives and cut off at the limit, so
    nothing larger is ever buffered.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        json_prefix: str = "/api/",
        limits: Mapping[str, int] | None = None,
        rules: Sequence[BodyRule] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.json_prefix = json_prefix
        self.limits = tuple((limits or {}).items())
        self.rules = tuple(rules)

    def _rule(self, path: str) -> BodyRule | None:
        return next((rule for rule in self.rules if rule.path.fullmatch(path)), None)

    def _limit(self, path: str) -> int:
        for prefix, limit in self.limits:
            if path.startswith(prefix):
                return limit
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        rule = self._rule(scope["path"])
        max_body_bytes = self._limit(scope["path"]) if rule is None else rule.max_bytes
        declared = headers.get("content-length")
        has_body = bool(declared and declared != "0") or "chunked" in headers.get("transfer-encoding", "")
        if declared is not None:
            # isascii: str.isdigit() also accepts digits like "²" that int() refuses.
            if not (declared.isascii() and declared.isdigit()):
                await self._reject(scope, send, BadRequest("Content-Length is not a valid length."))
                return
            if int(declared) > max_body_bytes:
                await self._reject(scope, send, PayloadTooLarge())
                return
        if rule is not None:
            if has_body and media_type(headers.get("content-type", "")) not in rule.media_types:
                await self._reject(scope, send, rule.refusal())
                return
        elif (
            has_body
            and scope["path"].startswith(self.json_prefix)
            and not _is_json(headers.get("content-type", ""))
        ):
            await self._reject(scope, send, UnsupportedMediaType())
            return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await self._reject(scope, send, PayloadTooLarge())

    @staticmethod
    async def _reject(scope: Scope, send: Send, error: AppError) -> None:
        response = error.response()
        # The rest of the body is not read: ask the client to stop sending it on this connection.
        response.headers["connection"] = "close"
        await response(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
