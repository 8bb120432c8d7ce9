"""The one guard every streaming response body goes through.

Once a response has started, an exception from its body can only cut the connection mid-body:
the client sees a truncated stream, and the server's log a traceback (Starlette's "Caught handled
exception, but response already started"). A streaming body is therefore wrapped in `guarded()`:
an exception ends the body cleanly, after one WARNING line that names the stream and the
exception's type (no traceback: it may come from the client's own input, and the stream's own code
decides what is worth more). A client that reconnects, as an EventSource does, starts over.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import TypeVar

from sse_starlette import EventSourceResponse

from service.core import metrics

log = logging.getLogger("routebook.streaming")

T = TypeVar("T")

# A comment this often keeps proxies from closing an idle stream.
PING_INTERVAL_S = 15


async def guarded(body: AsyncIterator[T], what: str) -> AsyncIterator[T]:
    """`body`'s items; an exception from it ends the stream (logged once) instead of escaping."""
    async with aclosing(body):  # type: ignore[type-var]  # an async generator has aclose()
        try:
            async for item in body:
                yield item
        except Exception as exc:
            log.warning("%s ended early: %s", what, type(exc).__name__)


def event_stream(body: AsyncIterator[dict[str, str]], what: str) -> EventSourceResponse:
    """A `text/event-stream` response of `body`'s events, guarded; never cached."""
    return EventSourceResponse(
        _counted(guarded(body, what)), ping=PING_INTERVAL_S, headers={"Cache-Control": "no-store"}
    )


async def _counted(body: AsyncIterator[T]) -> AsyncIterator[T]:
    """`body`, counted among the open event streams while it is being sent."""
    metrics.stream_opened(1)
    try:
        async with aclosing(body):  # type: ignore[type-var]  # an async generator has aclose()
            async for item in body:
                yield item
    finally:
        metrics.stream_opened(-1)
