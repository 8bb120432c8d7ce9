"""Every statement of a solve's life on `solutions`, bound to the solution's owner (RLS underneath).

The request path (queue, cancel, read for the event stream) and the worker (start, progress, finish)
both run these under `Database.as_user(owner)`; like the planning repository, the owner is `$1` in
every statement. Each state change is announced (NOTIFY) in the transaction that makes it, so event
streams on any instance see it once it is committed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from service.db import Connection, new_id
from service.errors import Conflict, NotFound
from service.planning.repository import SolutionRecord, columns
from service.solving.outcome import CANCELLED_EARLY

# Progress and final states of solutions, for event streams (payload: `Announcement`, as JSON).
SOLUTIONS_CHANNEL = "routebook_solutions"
# Cancellation requests, for the worker running the solve (payload: the solution id).
CANCEL_CHANNEL = "routebook_solve_cancel"
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
# An event stream's last status when its solution was deleted: not a solution status (the row is
# gone), announced by the deletion itself (migration 0009) or found by a stream's re-read.
DELETED = "deleted"

_SOLUTION = columns(SolutionRecord)


@dataclass(frozen=True, slots=True)
class StreamState:
    """What an event stream shows of a solution: its status, latest progress and their sequence."""

    status: str
    seq: int
    progress: dict[str, Any] | None
    reason: str | None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES or self.status == DELETED

    def announcement(self, solution_id: uuid.UUID) -> str:
        return orjson.dumps(
            {
                "id": str(solution_id),
                "status": self.status,
                "seq": self.seq,
                "progress": self.progress,
                "reason": self.reason,
            }
        ).decode()

    @classmethod
    def from_announcement(cls, data: dict[str, Any]) -> StreamState:
        return cls(
            status=data["status"], seq=data["seq"], progress=data.get("progress"), reason=data.get("reason")
        )


@dataclass(frozen=True, slots=True)
class StartedSolve:
    document: bytes
    scenario_version: int
    time_limit_s: int
    seed: int
    attempts: int


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


async def announce(conn: Connection, solution_id: uuid.UUID, state: StreamState) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", SOLUTIONS_CHANNEL, state.announcement(solution_id))


async def cancel_owner_solves(conn: Connection, user_id: uuid.UUID) -> None:
    """A deleted user's pending and running solves stop (the identity service's tombstone runs this
    before the planning rows are erased, in the same privileged transaction)."""
    await conn.execute("SELECT set_config('app.user_id', $1, true)", str(user_id))
    rows = await conn.fetch(
        "UPDATE solutions SET cancel_requested = true "
        "WHERE user_id = $1 AND status IN ('pending', 'running') RETURNING id",
        user_id,
    )
    ids = [str(row["id"]) for row in rows]
    for solution_id in ids:
        await conn.execute("SELECT pg_notify($1, $2)", CANCEL_CHANNEL, solution_id)
    if ids:
        # A job still waiting would only find its row gone; drop it now.
        await conn.execute(
            "DELETE FROM pgqueuer WHERE dedupe_key = ANY($1::text[]) AND status = 'queued'", ids
        )


class SolveRepository:
    """One user's solves. Cannot be built without its owner."""

    def __init__(self, conn: Connection, *, owner: uuid.UUID) -> None:
        if not isinstance(owner, uuid.UUID):
            raise TypeError("a SolveRepository is bound to its caller: owner must be a user id")
        self._conn = conn
        self._owner = owner

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self._conn.fetchrow(sql, self._owner, *args)

    # -- the request path -----------------------------------------------------------------------

    async def serialize_queueing(self) -> None:
        """Concurrent solve requests of one user take turns, so the active-solve limit holds."""
        await self._fetchrow("SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 7))")

    async def active_solves(self) -> int:
        row = await self._fetchrow(
            "SELECT count(*) AS n FROM solutions WHERE user_id = $1 AND status IN ('pending', 'running')"
        )
        return int(row["n"]) if row else 0

    async def scenario_to_solve(self, scenario_id: uuid.UUID) -> tuple[int, bytes]:
        """(version, request JSON) of the scenario, locked against a concurrent edit until commit."""
        row = await self._fetchrow(
            "SELECT version, convert_to(COALESCE(request, original_request)::text, 'UTF8') AS document "
            "FROM scenarios WHERE user_id = $1 AND id = $2 FOR SHARE",
            scenario_id,
        )
        if row is None:
            raise NotFound()
        return int(row["version"]), bytes(row["document"])

    async def queue(
        self, scenario_id: uuid.UUID, version: int, *, time_limit_s: int, seed: int
    ) -> SolutionRecord:
        """A pending solution holding a snapshot of the scenario's request at `version`."""
        row = await self._fetchrow(
            f"""
            INSERT INTO solutions (id, user_id, scenario_id, status, request, scenario_version, time_limit_s, seed)
            SELECT $3, c.user_id, c.id, 'pending', COALESCE(c.request, c.original_request), c.version, $4, $5
            FROM scenarios c WHERE c.user_id = $1 AND c.id = $2 AND c.version = $6
            RETURNING {_SOLUTION}
            """,
            scenario_id,
            new_id(),
            time_limit_s,
            seed,
            version,
        )
        if row is None:
            raise NotFound()  # the scenario went away (it was locked, so it did not change)
        return SolutionRecord(*row)

    async def cancel(self, solution_id: uuid.UUID) -> SolutionRecord:
        """Ask the solve to stop: a pending one ends at once (nothing found: failed), a running one is
        told through CANCEL_CHANNEL and ends with its best so far. 409 once it has finished."""
        row = await self._fetchrow(
            f"""
            UPDATE solutions SET
                cancel_requested = true,
                status = CASE WHEN status = 'pending' THEN 'failed' ELSE status END,
                reason = CASE WHEN status = 'pending' THEN $3 ELSE reason END,
                finished_at = CASE WHEN status = 'pending' THEN now() ELSE finished_at END,
                progress_seq = progress_seq + 1,
                version = version + 1,
                updated_at = now()
            WHERE user_id = $1 AND id = $2 AND status IN ('pending', 'running')
            RETURNING {_SOLUTION}, progress_seq, reason
            """,
            solution_id,
            CANCELLED_EARLY,
        )
        if row is None:
            if await self._fetchrow("SELECT 1 FROM solutions WHERE user_id = $1 AND id = $2", solution_id):
                raise Conflict("The solve has already finished.")
            raise NotFound()
        fields = dict(row)
        state = StreamState(fields["status"], fields.pop("progress_seq"), None, fields.pop("reason"))
        if state.status == "running":
            await self._conn.execute("SELECT pg_notify($1, $2)", CANCEL_CHANNEL, str(solution_id))
        else:
            await announce(self._conn, solution_id, state)
        return SolutionRecord(**fields)

    async def stream_state(self, solution_id: uuid.UUID) -> StreamState:
        row = await self._fetchrow(
            "SELECT status, progress_seq, progress::text AS progress, reason FROM solutions "
            "WHERE user_id = $1 AND id = $2",
            solution_id,
        )
        if row is None:
            raise NotFound()
        progress = orjson.loads(row["progress"]) if row["progress"] else None
        return StreamState(row["status"], row["progress_seq"], progress, row["reason"])

    # -- the worker ---------------------------------------------------------------------------

    async def start(self, solution_id: uuid.UUID) -> StartedSolve | None:
        """Mark the solve running (again, after an interrupted attempt); None when there is nothing to
        do: the solution was deleted, cancelled, or finished already."""
        row = await self._fetchrow(
            """
            UPDATE solutions SET status = 'running', attempts = attempts + 1, started_at = now(),
                progress = NULL, progress_seq = progress_seq + 1, version = version + 1, updated_at = now()
            WHERE user_id = $1 AND id = $2 AND status IN ('pending', 'running') AND NOT cancel_requested
            RETURNING convert_to(request::text, 'UTF8') AS document, scenario_version, time_limit_s, seed,
                attempts, progress_seq
            """,
            solution_id,
        )
        if row is None:
            return None
        await announce(self._conn, solution_id, StreamState("running", row["progress_seq"], None, None))
        return StartedSolve(
            document=bytes(row["document"]),
            scenario_version=row["scenario_version"],
            time_limit_s=row["time_limit_s"],
            seed=row["seed"],
            attempts=row["attempts"],
        )

    async def report(self, solution_id: uuid.UUID, progress: dict[str, Any]) -> bool | None:
        """Store and announce progress; True when a cancel was requested, None when the solve is no
        longer running (deleted, or ended elsewhere)."""
        row = await self._fetchrow(
            "UPDATE solutions SET progress = $3::jsonb, progress_seq = progress_seq + 1 "
            "WHERE user_id = $1 AND id = $2 AND status = 'running' RETURNING cancel_requested, progress_seq",
            solution_id,
            _json(progress),
        )
        if row is None:
            return None
        await announce(self._conn, solution_id, StreamState("running", row["progress_seq"], progress, None))
        return bool(row["cancel_requested"])

    async def finish(
        self,
        solution_id: uuid.UUID,
        status: str,
        *,
        payload: dict[str, Any] | None,
        reason: str | None,
        progress: dict[str, Any] | None,
    ) -> bool:
        """The final state; False when the solve was no longer running here (deleted meanwhile)."""
        row = await self._fetchrow(
            """
            UPDATE solutions SET status = $3, payload = $4::jsonb, reason = $5,
                progress = COALESCE($6::jsonb, progress), progress_seq = progress_seq + 1,
                finished_at = now(), version = version + 1, updated_at = now()
            WHERE user_id = $1 AND id = $2 AND status = 'running'
            RETURNING progress_seq, progress::text AS progress
            """,
            solution_id,
            status,
            _json(payload),
            reason,
            _json(progress),
        )
        if row is None:
            return False
        final = orjson.loads(row["progress"]) if row["progress"] else None
        await announce(self._conn, solution_id, StreamState(status, row["progress_seq"], final, reason))
        return True

    async def requeue(self, solution_id: uuid.UUID) -> None:
        """Back to pending (a worker shutting down hands the solve back to the queue)."""
        row = await self._fetchrow(
            "UPDATE solutions SET status = 'pending', progress = NULL, progress_seq = progress_seq + 1, "
            "version = version + 1, updated_at = now() "
            "WHERE user_id = $1 AND id = $2 AND status = 'running' RETURNING progress_seq",
            solution_id,
        )
        if row is not None:
            await announce(self._conn, solution_id, StreamState("pending", row["progress_seq"], None, None))
