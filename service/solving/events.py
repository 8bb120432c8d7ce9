"""A solution's progress as server-sent events, from whichever instance the client reached.

Workers announce every progress write and the final status on SOLUTIONS_CHANNEL (NOTIFY, in the
transaction that writes it). Each web process listens once (`service.core.notify.Listener`) and hands
announcements to the streams open for that solution (`EventHub`). A stream starts from the row as
committed, then follows announcements; while the listener is down, or when nothing has arrived for
a while, it re-reads the row, so a missed announcement delays an event but never loses the end.

Events: `progress` (id = the solution's progress sequence, data = elapsed_s, iterations,
best_distance, feasible, status) and one final `status` (data = status and, for failed, reason),
after which the stream ends; its status is `deleted` when the solution was deleted meanwhile. A
reconnect with `Last-Event-ID` skips what the client has seen.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from typing import Any

import orjson

from service.solving.repository import DELETED, StreamState

log = logging.getLogger("routebook.solving")

# How long a stream waits for an announcement before it re-reads the row (a missed NOTIFY, a
# listener reconnecting).
RESYNC_INTERVAL_S = 2.0
_INBOX_SIZE = 64
# An event id is a solution's progress sequence, an int4 column.
MAX_EVENT_ID = 2**31 - 1
_EVENT_ID = re.compile(r"[0-9]{1,10}")


class EventHub:
    """The open streams of this process, by solution; fed by the NOTIFY listener."""

    def __init__(self) -> None:
        self._inboxes: dict[uuid.UUID, set[asyncio.Queue[StreamState]]] = {}

    def open(self, solution_id: uuid.UUID) -> asyncio.Queue[StreamState]:
        """An inbox of the solution's announcements, until `close()`."""
        inbox: asyncio.Queue[StreamState] = asyncio.Queue(_INBOX_SIZE)
        self._inboxes.setdefault(solution_id, set()).add(inbox)
        return inbox

    def close(self, solution_id: uuid.UUID, inbox: asyncio.Queue[StreamState]) -> None:
        inboxes = self._inboxes.get(solution_id)
        if inboxes is not None:
            inboxes.discard(inbox)
            if not inboxes:
                del self._inboxes[solution_id]

    def streams(self, solution_id: uuid.UUID) -> int:
        """How many streams of the solution this process has open."""
        return len(self._inboxes.get(solution_id, ()))

    def announced(self, payload: str) -> None:
        """An announcement from any worker (the listener's callback)."""
        data = orjson.loads(payload)
        inboxes = self._inboxes.get(uuid.UUID(data["id"]))
        if not inboxes:
            return
        state = StreamState.from_announcement(data)
        for inbox in inboxes:
            if inbox.full():
                # A slow client: drop its oldest event; only the newest progress matters.
                inbox.get_nowait()
            inbox.put_nowait(state)


def _progress_event(state: StreamState) -> dict[str, Any]:
    data = {**(asdict(state.progress) if state.progress else {}), "status": state.status}
    return {"event": "progress", "id": str(state.seq), "data": orjson.dumps(data).decode()}


def _status_event(state: StreamState) -> dict[str, Any]:
    data: dict[str, Any] = {"status": state.status}
    if state.reason:
        data["reason"] = state.reason
    return {"event": "status", "id": str(state.seq), "data": orjson.dumps(data).decode()}


async def stream(
    first: StreamState,
    inbox: asyncio.Queue[StreamState],
    reread: Callable[[], Awaitable[StreamState | None]],
    last_event_id: int | None,
) -> AsyncIterator[dict[str, Any]]:
    """The events of one solution, from `first` (read after subscribing, so nothing falls between).

    `reread` returns None once the solution is gone: the deletion's own announcement was missed,
    and the stream ends with a `deleted` status all the same.
    """
    seen = last_event_id if last_event_id is not None else -1
    state = first
    while True:
        if state.final:
            yield _status_event(state)
            return
        if state.seq > seen and state.progress is not None:
            yield _progress_event(state)
            seen = state.seq
        try:
            async with asyncio.timeout(RESYNC_INTERVAL_S):  # not wait_for: see core/notify.py
                state = await inbox.get()
        except TimeoutError:
            state = await reread() or StreamState(DELETED, state.seq + 1, None, None)


def last_event_id(header: str | None) -> int | None:
    """The `Last-Event-ID` a reconnecting EventSource sends, read before the response starts.

    Only ASCII decimal digits up to MAX_EVENT_ID name an event: `str.isdigit()` also accepts "²",
    which `int()` refuses. Anything else is treated as absent (the stream starts from the beginning):
    an EventSource sends back whatever id it last saw, and a stream that repeats one progress event
    serves a client better than one that refuses to start.
    """
    if header is None:
        return None
    value = header.strip(" \t")
    if not _EVENT_ID.fullmatch(value):
        return None
    number = int(value)
    return number if number <= MAX_EVENT_ID else None
