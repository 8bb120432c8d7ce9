"""The HTTP server around the app: uvicorn, with every wait and every count bounded by settings.

uvicorn bounds what it can (keep-alive, graceful shutdown, connections, backlog); two gaps are filled
by `BoundedHttpProtocol`, its httptools protocol with three changes:

- uvicorn arms its idle timer only after a response, so a connection that never completes a
  request's headers — opened and left silent, or dribbling a header a minute — was held forever.
  Here the headers must be complete within TIMEOUT_REQUEST_HEADERS of the connection's opening (or
  of the request's first byte on a kept-alive connection), else the connection is closed.
- over LIMIT_CONCURRENCY uvicorn answers a bare `text/plain` 503 and counts the connection being
  served against the limit (so at most limit - 1 were open). Here the limit is exact and the answer
  is the API's problem+json 503 with Retry-After and an X-Request-ID, through the access log.
- httptools accepts a header of any length (20 MB were taken in): a request line and headers over
  MAX_REQUEST_HEAD_BYTES are answered 431 and the connection closed.
- a request that is not valid HTTP (a Content-Length that is not a number, raw non-ASCII in the
  URL) got uvicorn's `text/plain` 400; here it is the API's problem+json 400, with a request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import uuid
from http import HTTPStatus
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors import Multiprocess

from service.config import Settings
from service.core import metrics
from service.core.errors import problem_response
from service.core.middleware import RequestContextMiddleware

log = logging.getLogger("routebook.server")

BUSY_RETRY_AFTER_SECONDS = 1
# Request line and headers together. Tokens are at most 16 KiB, a browser's cookies a
# few more; nginx's default is 4 x 8 KiB.
MAX_REQUEST_HEAD_BYTES = 64 * 1024


def _raw_problem(status: int, detail: str) -> bytes:
    """A whole problem+json response with Connection: close, for the protocol to write itself (it
    carries a request id of its own: no request reached the app)."""
    response = problem_response(status, detail, headers={"X-Request-ID": uuid.uuid4().hex})
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
    head += [name + b": " + value for name, value in response.raw_headers]
    head.append(b"connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + bytes(response.body)


_HEAD_TOO_LARGE = "The request line and headers are larger than this server accepts."


def _refusal(status: int, detail: str, headers: dict[str, str]) -> ASGIApp:
    """An app that answers one problem without reading the body (so: Connection: close), with a
    request id and an access-log line like every other response."""

    async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
        if status == 503:
            metrics.unavailable("concurrency_limit")
        response = problem_response(status, detail, headers={**headers, "Connection": "close"})
        await response(scope, receive, send)

    return RequestContextMiddleware(refuse)


refuse_busy = _refusal(
    503,
    "The server is at its concurrency limit; try again shortly.",
    {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
)
refuse_head_too_large = _refusal(431, _HEAD_TOO_LARGE, {})


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a request-headers deadline and an exact, problem+json limit."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._app = self.app
        # The limit is checked here (on_headers_complete), not by uvicorn's own bare-503 check.
        self._limit = self.limit_concurrency
        self.limit_concurrency = None
        # A plain uvicorn Config (`uvicorn ... --http service.core.server:BoundedHttpProtocol`) has no
        # headers deadline of its own: its keep-alive timeout bounds the headers too.
        self._headers_timeout: float = getattr(config, "timeout_request_headers", config.timeout_keep_alive)
        self._headers_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # of the request line and headers parsed so far
        self._received_bytes = 0  # read while this request's headers were incomplete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_headers_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_headers_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._headers_timer is None:  # not waiting for headers: a body, or between requests
            return
        # httptools buffers a header however long it grows, so a head that never ends would grow
        # in memory until the deadline: it is cut off at MAX_REQUEST_HEAD_BYTES (plus one read).
        self._received_bytes += len(data)
        if self._received_bytes > MAX_REQUEST_HEAD_BYTES and not self.transport.is_closing():
            log.warning("request refused: its head is over %d bytes", MAX_REQUEST_HEAD_BYTES)
            self._stop_headers_clock()
            # A head that never ends: no request to hand an app, so the protocol answers itself.
            self.transport.write(_raw_problem(431, _HEAD_TOO_LARGE))
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """The parser refused the bytes (uvicorn has logged its warning): a problem, not plain text."""
        self._stop_headers_clock()
        self.transport.write(_raw_problem(400, "The request is not valid HTTP."))
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # On a fresh connection the clock already runs from its opening; a dribbled first request
        # does not restart it.
        if self._headers_timer is None:
            self._start_headers_clock()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._head_bytes += len(name) + len(value) + 4  # ": " and CRLF

    def on_headers_complete(self) -> None:
        self._stop_headers_clock()
        head_bytes, self._head_bytes, self._received_bytes = self._head_bytes, 0, 0
        # `connections` includes this one; `tasks` does not yet include this request's.
        busy = self._limit is not None and (
            len(self.connections) > self._limit or len(self.tasks) >= self._limit
        )
        if head_bytes > MAX_REQUEST_HEAD_BYTES:
            log.warning("request refused: its head is over %d bytes", MAX_REQUEST_HEAD_BYTES)
            self.app = refuse_head_too_large
        elif busy:
            log.warning("request refused: over LIMIT_CONCURRENCY (%s)", self._limit)
            self.app = refuse_busy
        else:
            self.app = self._app
        super().on_headers_complete()

    def _start_headers_clock(self) -> None:
        self._headers_timer = self.loop.call_later(self._headers_timeout, self._headers_overdue)

    def _stop_headers_clock(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def _headers_overdue(self) -> None:
        self._headers_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            # A response is still going out (the overdue headers are a pipelined request's): let it
            # finish, and give the next request's headers another period.
            self._start_headers_clock()
            return
        if not self.transport.is_closing():
            self.transport.close()


class BoundedConfig(Config):
    """uvicorn's Config plus the request-headers deadline its protocol reads."""

    def __init__(self, app: str, *, timeout_request_headers: int, **options: Any) -> None:
        super().__init__(app, **options)
        self.timeout_request_headers = timeout_request_headers


def server_options(settings: Settings, *, workers: int | None = None) -> dict[str, Any]:
    """uvicorn's options, every one from settings (HOST, PORT and the server limits)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "workers": workers or settings.web_concurrency,
        "http": BoundedHttpProtocol,
        "timeout_keep_alive": settings.timeout_keep_alive,
        "timeout_graceful_shutdown": settings.timeout_graceful_shutdown,
        "limit_concurrency": settings.limit_concurrency,
        "backlog": settings.backlog,
        "proxy_headers": settings.proxy_headers,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        # Our handler and our access log (which never carries a query string or a header).
        "log_config": None,
        "access_log": False,
    }


def serve(settings: Settings, *, workers: int | None = None) -> None:
    """Run `service.main:app` until SIGTERM/SIGINT; as uvicorn.run does, with our Config.

    The app is an import string so that each worker process imports (and builds) its own.
    """
    options = server_options(settings, workers=workers)
    config = BoundedConfig(
        "service.main:app", timeout_request_headers=settings.timeout_request_headers, **options
    )
    if config.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
