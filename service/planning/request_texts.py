"""A large scenario request's JSON text, stored beside it so that reading it sends stored bytes.

PostgreSQL renders a JSONB document as text on every read: for a 20 MB request (four million
numbers) that is about 0.3 s of its CPU per GET, most of the GET. So the text is rendered once and
stored with the scenario (`request_text`, migration 0016), stamped with the version it was rendered
for; a read uses it only while that is still the scenario's version.

The rendering is not on any request's path. After a write of a large request, and after a large
read that found no text for the current version, `RequestTexts.refresh` asks for it; one task per
process then renders the waiting scenarios one at a time, each in a transaction of its own, as the
member who asked (row-level security as for any write; a member who may only read does not ask).
Until it is stored, and whenever it cannot be (the database is down, the row stays locked, the
process stops, the scenario was written again meanwhile), reads render the request as before: the
stored text is a copy that may be missing, never one that is wrong. A write that changes the
request drops it, a rename keeps it (`PlanningRepository`), and a statement from outside the API
that changes the request without the version has it dropped by a trigger (migration 0016).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from service.core.repository import WorkspaceScope
from service.planning.repository import PlanningRepository

logger = logging.getLogger(__name__)

# Scenarios waiting for their text, per process. Beyond this, a request is dropped: its scenario's
# next large read asks again.
MAX_WAITING = 64
# A request whose body is larger than this may be read in pieces (a stored JSONB document of more
# than WHOLE_STORED_BYTES: uncompressed JSONB is about twice its text), so its write asks for its
# text; a smaller one is rendered whole in the statement that reads the scenario.
REFRESH_AFTER_WRITE_BYTES = 64 * 1024


class RequestTexts:
    """Renders and stores scenario requests' text in the background, one at a time."""

    def __init__(self, max_waiting: int = MAX_WAITING) -> None:
        # Insertion-ordered: the first asked is the first rendered. The value is the member's scope
        # and the version to render for (the newest asked).
        self._waiting: dict[uuid.UUID, tuple[WorkspaceScope[PlanningRepository], int]] = {}
        self._max_waiting = max_waiting
        self._runner: asyncio.Task[None] | None = None
        self._closed = False

    def refresh(
        self, planning: WorkspaceScope[PlanningRepository], scenario_id: uuid.UUID, version: int
    ) -> None:
        """Ask for the scenario's text at `version` to be stored; returns at once."""
        if self._closed or not planning.may_write:
            return
        waiting = self._waiting.get(scenario_id)
        if waiting is not None:
            if version > waiting[1]:
                self._waiting[scenario_id] = (planning, version)
            return
        if len(self._waiting) >= self._max_waiting:
            return
        self._waiting[scenario_id] = (planning, version)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="scenario-request-texts")

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def _run(self) -> None:
        while self._waiting:
            scenario_id = next(iter(self._waiting))
            planning, version = self._waiting.pop(scenario_id)
            try:
                async with planning.writing() as repo:
                    await repo.store_request_text(scenario_id, version)
            except Exception as exc:  # the copy is optional: a read renders without it
                # No traceback: a database that is down or a member removed meanwhile is not a fault
                # here, and the next large read asks again.
                logger.warning(
                    "scenario request text not stored",
                    extra={"scenario_id": str(scenario_id), "error": type(exc).__name__},
                )

    async def close(self) -> None:
        """Stop: what waits is dropped, a rendering under way is cancelled (its transaction rolls
        back), and nothing is asked for again."""
        self._closed = True
        self._waiting.clear()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
