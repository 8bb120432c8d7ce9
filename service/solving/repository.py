"""Every statement on `solutions`, bound to the solution's owner (RLS underneath): solving owns the
table. Solutions a client records (create, list, read, change, delete) and a solve's whole life —
the request path (queue, cancel, read for the event stream) and the worker (start, progress,
finish) — run under `Database.as_user(owner)`, the owner `$1` of every statement. Each state change is announced (NOTIFY) in the transaction that makes it, so event
streams on any instance see it once it is committed.

A run of a solve is fenced by its attempt number: `start()` counts the run, and the run's progress
and result are written only while the row still counts that run. A worker that lost its lease (it
fell silent, and another worker started the solve again) can then no longer write anything.

The sweep's cross-user read (`queue.stranded_solves`, as the sweeper role, which sees nothing else:
migration 0010) finds what `end_stranded` then ends, one owner at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson

from service.core.db import Connection, new_id, utcnow
from service.core.errors import Conflict, NotFound, PreconditionFailed
from service.core.pagination import Cursor
from service.core.repository import AS_BYTES, CREATED_BY, MEMBER, WorkspaceRepository, columns
from service.outbound.events import solution_body, solution_event
from service.outbound.repository import DeliveryRepository
from service.solver.outcome import (
    ACTIVE_STATUSES,
    CANCELLED_EARLY,
    FINAL_STATUSES,
    Progress,
    SolutionStatus,
    sql_list,
)
from service.solving import queue, tickets
from service.solving.queue import SolveJob, StrandedSolve

# Progress and final states of solutions, for event streams (payload: `Announcement`, as JSON).
SOLUTIONS_CHANNEL = "routebook_solutions"
# The reason of a solve whose job left the queue before anything finished it (found by the sweeper).
LOST = "the solve was lost before it finished"
# Cancellation requests, for the worker running the solve (payload: the solution id).
CANCEL_CHANNEL = "routebook_solve_cancel"
# Statuses as SQL literals, from the one list (SolutionStatus).
_ACTIVE = sql_list(ACTIVE_STATUSES)
_PENDING, _RUNNING, _FAILED = (
    f"'{s}'" for s in (SolutionStatus.PENDING, SolutionStatus.RUNNING, SolutionStatus.FAILED)
)

# An event stream's last status when its solution was deleted: not a solution status (the row is
# gone), announced by the deletion itself (migration 0009) or found by a stream's re-read.
DELETED = "deleted"


def _routes_cut(payload: str, members: str) -> str:
    """`payload`'s routes, each cut to `members` (a jsonb_build_object argument list over `route`);
    anything that is not an array where routes belong, or not an object where a route belongs, is
    passed on as it is, for the plan reader to refuse."""
    return f"""CASE jsonb_typeof({payload} -> 'routes') WHEN 'array' THEN (
        SELECT COALESCE(jsonb_agg(CASE jsonb_typeof(route) WHEN 'object' THEN jsonb_build_object({members})
            ELSE route END ORDER BY n), '[]'::jsonb)
        FROM jsonb_array_elements({payload} -> 'routes') WITH ORDINALITY AS t(route, n)
    ) ELSE {payload} -> 'routes' END"""


_VEHICLE = "'vehicle_type', route -> 'vehicle_type', 'vehicle', route -> 'vehicle'"
_TOTALS = "'distance', route -> 'distance', 'duration', route -> 'duration'"
# A route's `visits` when it has no list of `stops`, and the other way round.
_UNLESS_STOPS = (
    "CASE WHEN jsonb_typeof(route -> 'stops') IS DISTINCT FROM 'array' THEN route -> '{member}' END"
)
_UNLESS_VISITS = (
    "CASE WHEN jsonb_typeof(route -> 'visits') IS DISTINCT FROM 'array' THEN route -> '{member}' END"
)
# A payload cut to what a comparison reads: totals, unassigned stops, and per route its vehicle, its
# stops, its visits' ids and kinds, and its totals — no arrivals, loads or solver statistics.
# A route's visits without their arrivals: the comparison reads where shipments are picked up.
_VISIT_IDS = """CASE jsonb_typeof(route -> 'visits') WHEN 'array' THEN (
    SELECT COALESCE(jsonb_agg(CASE jsonb_typeof(visit) WHEN 'object'
        THEN jsonb_build_object('id', visit -> 'id', 'kind', visit -> 'kind') ELSE visit END ORDER BY k), '[]'::jsonb)
    FROM jsonb_array_elements(route -> 'visits') WITH ORDINALITY AS v(visit, k)
) ELSE route -> 'visits' END"""
_COMPARED_ROUTE = f"{_VEHICLE}, 'stops', route -> 'stops', 'visits', {_VISIT_IDS}, {_TOTALS}"
_PLAN_TO_COMPARE = f"""
CASE WHEN payload IS NOT NULL THEN jsonb_build_object(
    'distance', payload -> 'distance', 'duration', payload -> 'duration', 'cost', payload -> 'cost',
    'unassigned', COALESCE(payload -> 'unassigned', '[]'::jsonb),
    'routes', {_routes_cut("payload", _COMPARED_ROUTE)}
) END
"""
# A payload cut to what a map draws: per route its vehicle, its visits (or, for a payload without
# them, its stops and their arrivals) and its totals.
_DRAWN_ROUTE = (
    f"{_VEHICLE}, 'visits', route -> 'visits', 'stops', {_UNLESS_VISITS.format(member='stops')}, "
    f"'arrivals', {_UNLESS_VISITS.format(member='arrivals')}, {_TOTALS}"
)
_ROUTES_TO_DRAW = f"CASE WHEN s.payload IS NOT NULL THEN jsonb_build_object('routes', {_routes_cut('s.payload', _DRAWN_ROUTE)}) END"
# A request cut to its places: no matrix (millions of cells at 2,000 stops), no options.
_PLACES = """
CASE WHEN jsonb_typeof({request}) = 'object' THEN jsonb_build_object(
    'depots', {request} -> 'depots', 'stops', {request} -> 'stops',
    'shipments', {request} -> 'shipments', 'vehicle_types', {request} -> 'vehicle_types'
) END
"""


@dataclass(slots=True)
class SolutionRecord:
    id: uuid.UUID
    scenario_id: uuid.UUID
    status: str
    version: int
    created_at: datetime
    updated_at: datetime
    created_by: uuid.UUID = field(metadata=CREATED_BY)


@dataclass(slots=True)
class SolutionHeadRecord(SolutionRecord):
    """A solution with its solve's latest progress and, when it failed, why (None when recorded),
    and for a re-solve the solution it started from and its pins."""

    progress: Progress | None
    reason: str | None
    from_solution: uuid.UUID | None = None
    pins: list[Any] | None = None


_SOLUTION = columns(SolutionRecord)


@dataclass(frozen=True, slots=True)
class StreamState:
    """What an event stream shows of a solution: its status, latest progress and their sequence."""

    status: str
    seq: int
    progress: Progress | None
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
                "progress": None if self.progress is None else asdict(self.progress),
                "reason": self.reason,
            }
        ).decode()

    @classmethod
    def from_announcement(cls, data: dict[str, Any]) -> StreamState:
        return cls(
            status=data["status"],
            seq=data["seq"],
            progress=progress_from(data.get("progress")),
            reason=data.get("reason"),
        )


@dataclass(frozen=True, slots=True)
class StartedSolve:
    document: bytes
    scenario_version: int
    time_limit_s: int
    seed: int
    attempts: int  # this run's number: the fence of its writes
    # A re-solve's pins and seed routes, as JSON text (None for a plain solve).
    pins: bytes | None = None
    seed_routes: bytes | None = None


@dataclass(frozen=True, slots=True)
class NotStarted:
    """Why a job found nothing to run: its solution is `gone` (deleted), `cancelled` (a cancel came
    while no worker ran it: `start()` has just finished it), or `finished` already (its result was
    written by an earlier run, whose job was not closed)."""

    why: Literal["gone", "cancelled", "finished"]
    status: str | None = None


def _json(value: Any) -> str | None:
    if isinstance(value, Progress):
        value = asdict(value)
    return None if value is None else orjson.dumps(value).decode()


def progress_from(stored: str | dict[str, Any] | None) -> Progress | None:
    """A row's or an announcement's progress (JSON text, or its parsed object) as `Progress`."""
    if stored is None:
        return None
    fields = orjson.loads(stored) if isinstance(stored, str) else stored
    return Progress(**fields)


async def announce(conn: Connection, solution_id: uuid.UUID, state: StreamState) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", SOLUTIONS_CHANNEL, state.announcement(solution_id))


async def end_stranded(conn: Connection, solve: StrandedSolve, *, lease: timedelta) -> bool:
    """End one stranded solve, in a privileged transaction: its job, held by a worker that fell
    silent, is closed, and the solve is `failed` — as cancelled before a solution was found, or as
    lost. False when a worker has it again meanwhile."""
    await conn.execute(
        "SELECT set_config('app.user_id', $1, true), set_config('app.workspace_id', $2, true)",
        str(solve.user_id),
        str(solve.workspace_id),
    )
    if not await queue.close_abandoned(conn, solve.id, lease=lease):
        return False
    reason = CANCELLED_EARLY if solve.cancel_requested else LOST
    return await SolutionRepository(conn, workspace=solve.workspace_id, user=solve.user_id).abandon(
        solve.id, reason
    )


async def cancel_workspace_solves(conn: Connection, workspace_id: uuid.UUID) -> None:
    """A deleted workspace's pending and running solves stop (run before its planning rows are
    erased, in the same privileged transaction)."""
    await conn.execute("SELECT set_config('app.workspace_id', $1, true)", str(workspace_id))
    rows = await conn.fetch(
        "UPDATE solutions SET cancel_requested = true "
        f"WHERE workspace_id = $1 AND status IN {_ACTIVE} RETURNING id",
        workspace_id,
    )
    ids = [str(row["id"]) for row in rows]
    for solution_id in ids:
        await conn.execute("SELECT pg_notify($1, $2)", CANCEL_CHANNEL, solution_id)
    if ids:
        # A job still waiting would only find its row gone; drop it now.
        await queue.drop_queued(conn, ids)


async def cancel_owner_solves(conn: Connection, user_id: uuid.UUID) -> None:
    """A deleted user's pending and running solves in their personal workspace (its id is theirs)
    stop: the identity service's tombstone runs this before their planning rows are erased."""
    await cancel_workspace_solves(conn, user_id)


class SolutionRepository(WorkspaceRepository):
    """One user's solutions, recorded or solved."""

    # -- recorded solutions (a client's own) ----------------------------------------------------

    async def create(self, scenario_id: uuid.UUID, status: str, raw_body: bytes | None) -> SolutionRecord:
        """`raw_body`, when given, carries the payload as its `payload` member."""
        payload = MEMBER.format(param="$5", member="payload")  # NULL without a body
        sql = f"""
            INSERT INTO solutions (id, workspace_id, user_id, scenario_id, status, payload)
            SELECT $3, c.workspace_id, $6, c.id, $4, {payload}
            FROM scenarios c WHERE c.workspace_id = $1 AND c.id = $2
            RETURNING {_SOLUTION}
        """
        row = await self._fetchrow(
            sql, scenario_id, new_id(), status, raw_body, self._user, document=raw_body is not None
        )
        return SolutionRecord(*row)

    async def list(self, scenario_id: uuid.UUID, limit: int, cursor: Cursor | None) -> list[SolutionRecord]:
        sql = f"SELECT {_SOLUTION} FROM solutions WHERE workspace_id = $1 AND scenario_id = $2"
        return [
            SolutionRecord(*row) for row in await self._children(sql, "scenarios", scenario_id, limit, cursor)
        ]

    async def get(self, solution_id: uuid.UUID) -> tuple[SolutionHeadRecord, bytes | None]:
        """The solution with its solve state, and its payload as JSON text (None when it has none)."""
        document = AS_BYTES.format(document="payload")
        sql = (
            f"SELECT {_SOLUTION}, progress::text AS progress, reason, from_solution, pins::text AS pins, "
            f"{document} AS document FROM solutions WHERE workspace_id = $1 AND id = $2"
        )
        values = dict(await self._fetchrow(sql, solution_id))
        text: bytes | None = values.pop("document")
        progress = values.pop("progress")
        pins = values.pop("pins")
        record = SolutionHeadRecord(
            **values, progress=progress_from(progress), pins=None if pins is None else orjson.loads(pins)
        )
        return record, text

    async def plans(self, *solution_ids: uuid.UUID) -> dict[uuid.UUID, bytes | None]:
        """What a comparison reads of each solution: its totals, unassigned stops, and each route's
        vehicle and stops (not the arrivals, loads or solver statistics of a payload of megabytes);
        None for a solution without a payload. NotFound unless every one is the workspace's."""
        rows = await self._fetch(
            f"SELECT id, {AS_BYTES.format(document=_PLAN_TO_COMPARE)} AS document "
            "FROM solutions WHERE workspace_id = $1 AND id = ANY($2::text::uuid[])",
            "{" + ",".join(map(str, solution_ids)) + "}",
        )
        found: dict[uuid.UUID, bytes | None] = {
            row["id"]: None if row["document"] is None else bytes(row["document"]) for row in rows
        }
        if set(solution_ids) - found.keys():
            raise NotFound()
        return found

    async def located_plan(self, solution_id: uuid.UUID) -> tuple[int, bytes | None, bytes | None]:
        """(version, the payload's routes, the places of the request they were solved from) as JSON text: the
        solve's own snapshot of the request, or for a recorded solution its scenario's current one.
        Only what a map needs is read: no matrix, no solver statistics."""
        row = await self._fetchrow(
            f"""
            SELECT s.version, {AS_BYTES.format(document=_ROUTES_TO_DRAW)} AS plan,
                   {AS_BYTES.format(document=_PLACES.format(request="r.request"))} AS places
            FROM solutions s
            CROSS JOIN LATERAL (
                SELECT COALESCE(s.request, c.request, c.original_request) AS request
                FROM scenarios c WHERE c.workspace_id = $1 AND c.id = s.scenario_id
            ) r
            WHERE s.workspace_id = $1 AND s.id = $2
            """,
            solution_id,
        )
        plan, places = row["plan"], row["places"]
        return (
            int(row["version"]),
            None if plan is None else bytes(plan),
            None if places is None else bytes(places),
        )

    async def update(
        self,
        solution_id: uuid.UUID,
        *,
        status: SolutionStatus | None,
        raw_body: bytes | None,
        expected: Collection[int] | None,
    ) -> SolutionRecord:
        """`raw_body`, when given, carries the new payload as its `payload` member. A solve owns its
        solution while it is pending or running: then nothing is written, and the answer is 409."""
        payload = f"COALESCE({MEMBER.format(param='$5', member='payload')}, payload)"
        sql = f"""
            UPDATE solutions
            SET status = COALESCE($4, status), payload = {payload}, version = version + 1, updated_at = now()
            WHERE workspace_id = $1 AND id = $2 AND status NOT IN {_ACTIVE} AND {self.IF_MATCH}
            RETURNING {_SOLUTION}
        """
        rows = await self._fetch(
            sql, solution_id, self.versions(expected), status, raw_body, document=raw_body is not None
        )
        if rows:
            return SolutionRecord(*rows[0])
        row = await self._fetchrow_or_none(
            "SELECT status FROM solutions WHERE workspace_id = $1 AND id = $2", solution_id
        )
        if row is None:
            raise NotFound()
        if expected is not None and not SolutionStatus(row["status"]).active:
            raise PreconditionFailed()
        # Pending or running when the write was tried (it may have ended since).
        raise Conflict("A solve owns this solution until it ends: cancel it, or wait for it.")

    async def delete(self, solution_id: uuid.UUID, expected: Collection[int] | None) -> None:
        await self._delete("solutions", solution_id, expected)

    # -- the request path -----------------------------------------------------------------------

    async def serialize_queueing(self) -> None:
        """Concurrent solve requests in one workspace take turns, so the active-solve limits hold."""
        await self._fetchrow_or_none("SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 7))")

    async def active_solves(self) -> tuple[int, int]:
        """(the caller's, the whole workspace's) pending and running solves in this workspace."""
        row = await self._fetchrow_or_none(
            "SELECT count(*) FILTER (WHERE user_id = $2) AS mine, count(*) AS every "
            f"FROM solutions WHERE workspace_id = $1 AND status IN {_ACTIVE}",
            self._user,
        )
        return (int(row["mine"]), int(row["every"])) if row else (0, 0)

    async def scenario_to_solve(self, scenario_id: uuid.UUID) -> tuple[int, bytes]:
        """(version, request JSON) of the scenario. Nothing is locked: `queue()` takes the snapshot only
        if the version is still this one."""
        row = await self._fetchrow_or_none(
            f"SELECT version, {AS_BYTES.format(document='COALESCE(request, original_request)')} AS document "
            "FROM scenarios WHERE workspace_id = $1 AND id = $2",
            scenario_id,
        )
        if row is None:
            raise NotFound()
        return int(row["version"]), bytes(row["document"])

    async def replan_source(self, solution_id: uuid.UUID) -> tuple[uuid.UUID, SolutionStatus]:
        """(scenario, status) of a solution a re-solve would start from; NotFound when not theirs."""
        row = await self._fetchrow_or_none(
            "SELECT scenario_id, status FROM solutions WHERE workspace_id = $1 AND id = $2", solution_id
        )
        if row is None:
            raise NotFound("The solution to start from was not found.")
        return row["scenario_id"], SolutionStatus(row["status"])

    async def queue(
        self,
        scenario_id: uuid.UUID,
        version: int,
        *,
        time_limit_s: int,
        seed: int,
        from_solution: uuid.UUID | None = None,
        pins: Sequence[dict[str, Any]] | None = None,
    ) -> SolutionRecord | None:
        """A pending solution holding a snapshot of the scenario's request at `version` (and, for a
        re-solve, of the routes of `from_solution`); None when the scenario has been edited since
        (NotFound when it is gone)."""
        row = await self._fetchrow_or_none(
            f"""
            INSERT INTO solutions (id, workspace_id, user_id, scenario_id, status, request, scenario_version,
                time_limit_s, seed, from_solution, pins, seed_routes)
            SELECT $3, c.workspace_id, $7, c.id, {_PENDING}, COALESCE(c.request, c.original_request), c.version,
                $4, $5, $8, $9::jsonb,
                (SELECT f.payload -> 'routes' FROM solutions f
                 WHERE f.workspace_id = $1 AND f.id = $8 AND f.scenario_id = c.id)
            FROM scenarios c WHERE c.workspace_id = $1 AND c.id = $2 AND c.version = $6
            RETURNING {_SOLUTION}
            """,
            scenario_id,
            new_id(),
            time_limit_s,
            seed,
            version,
            self._user,
            from_solution,
            _json(pins),
        )
        if row is None:
            if await self._fetchrow_or_none(
                "SELECT 1 FROM scenarios WHERE workspace_id = $1 AND id = $2", scenario_id
            ):
                return None
            raise NotFound()
        return SolutionRecord(*row)

    async def enqueue(self, job: SolveJob) -> None:
        """The solve's job, in this transaction: the worker sees it once the pending row is committed."""
        await queue.enqueue(self._conn, job)

    async def issue_ticket(self, solution_id: uuid.UUID) -> str:
        """A stream ticket for one of the workspace's solutions (the caller has read it)."""
        return await tickets.issue(self._conn, self._owner, self._user, solution_id)

    async def cancel(self, solution_id: uuid.UUID) -> SolutionRecord:
        """Ask the solve to stop: a pending one ends at once (nothing found: failed), a running one is
        told through CANCEL_CHANNEL and ends with its best so far. 409 once it has finished."""
        row = await self._fetchrow_or_none(
            f"""
            UPDATE solutions SET
                cancel_requested = true,
                status = CASE WHEN status = {_PENDING} THEN {_FAILED} ELSE status END,
                reason = CASE WHEN status = {_PENDING} THEN $3 ELSE reason END,
                finished_at = CASE WHEN status = {_PENDING} THEN now() ELSE finished_at END,
                progress_seq = progress_seq + 1,
                version = version + 1,
                updated_at = now()
            WHERE workspace_id = $1 AND id = $2 AND status IN {_ACTIVE}
            RETURNING {_SOLUTION}, progress_seq, reason
            """,
            solution_id,
            CANCELLED_EARLY,
        )
        if row is None:
            if await self._fetchrow_or_none(
                "SELECT 1 FROM solutions WHERE workspace_id = $1 AND id = $2", solution_id
            ):
                raise Conflict("The solve has already finished.")
            raise NotFound()
        fields = dict(row)
        state = StreamState(fields["status"], fields.pop("progress_seq"), None, fields.pop("reason"))
        if state.status == "running":
            await self._conn.execute("SELECT pg_notify($1, $2)", CANCEL_CHANNEL, str(solution_id))
        else:
            await announce(self._conn, solution_id, state)
            await self._ended(solution_id, fields["scenario_id"], state.status, None)
        return SolutionRecord(**fields)

    async def stream_state(self, solution_id: uuid.UUID) -> StreamState:
        row = await self._fetchrow_or_none(
            "SELECT status, progress_seq, progress::text AS progress, reason FROM solutions "
            "WHERE workspace_id = $1 AND id = $2",
            solution_id,
        )
        if row is None:
            raise NotFound()
        return StreamState(row["status"], row["progress_seq"], progress_from(row["progress"]), row["reason"])

    # -- the worker ---------------------------------------------------------------------------

    async def start(self, solution_id: uuid.UUID) -> StartedSolve | NotStarted:
        """Mark the solve running (again, after an interrupted run), or say why there is nothing to
        run. A solve cancelled while no worker ran it (queued behind busy workers, or its worker
        died) is finished here: `failed`, as a cancel before any solution is — a run's best so far
        lives in its worker's memory only, and that worker is gone."""
        row = await self._fetchrow_or_none(
            f"""
            UPDATE solutions SET status = {_RUNNING}, attempts = attempts + 1, started_at = now(),
                progress = NULL, progress_seq = progress_seq + 1, version = version + 1, updated_at = now()
            WHERE workspace_id = $1 AND id = $2 AND status IN {_ACTIVE} AND NOT cancel_requested
            RETURNING {AS_BYTES.format(document="request")} AS document, scenario_version, time_limit_s,
                seed, attempts, progress_seq, {AS_BYTES.format(document="pins")} AS pins,
                {AS_BYTES.format(document="seed_routes")} AS seed_routes
            """,
            solution_id,
        )
        if row is None:
            return await self._not_started(solution_id)
        await announce(self._conn, solution_id, StreamState("running", row["progress_seq"], None, None))
        return StartedSolve(
            document=bytes(row["document"]),
            scenario_version=row["scenario_version"],
            time_limit_s=row["time_limit_s"],
            seed=row["seed"],
            attempts=row["attempts"],
            pins=None if row["pins"] is None else bytes(row["pins"]),
            seed_routes=None if row["seed_routes"] is None else bytes(row["seed_routes"]),
        )

    async def _not_started(self, solution_id: uuid.UUID) -> NotStarted:
        if await self.abandon(solution_id, CANCELLED_EARLY, cancelled_only=True):
            return NotStarted("cancelled", "failed")
        row = await self._fetchrow_or_none(
            "SELECT status FROM solutions WHERE workspace_id = $1 AND id = $2", solution_id
        )
        if row is None:
            return NotStarted("gone")
        return NotStarted("finished", row["status"])

    async def abandon(self, solution_id: uuid.UUID, reason: str, *, cancelled_only: bool = False) -> bool:
        """End a pending or running solve that no run will finish: `failed` with `reason`. False when
        it was not active (or, with `cancelled_only`, not cancelled)."""
        row = await self._fetchrow_or_none(
            f"""
            UPDATE solutions SET status = {_FAILED}, reason = $3, finished_at = now(),
                progress_seq = progress_seq + 1, version = version + 1, updated_at = now()
            WHERE workspace_id = $1 AND id = $2 AND status IN {_ACTIVE} AND (cancel_requested OR NOT $4)
            RETURNING progress_seq, scenario_id
            """,
            solution_id,
            reason,
            cancelled_only,
        )
        if row is None:
            return False
        await announce(self._conn, solution_id, StreamState("failed", row["progress_seq"], None, reason))
        await self._ended(solution_id, row["scenario_id"], "failed", None)
        return True

    async def run_state(self, solution_id: uuid.UUID) -> tuple[str, int] | None:
        """(status, attempts) of the solve, None when it is gone: what became of a run whose writes
        were refused."""
        row = await self._fetchrow_or_none(
            "SELECT status, attempts FROM solutions WHERE workspace_id = $1 AND id = $2", solution_id
        )
        return None if row is None else (row["status"], row["attempts"])

    async def report(self, solution_id: uuid.UUID, attempt: int, progress: Progress) -> bool | None:
        """Store and announce progress of run `attempt`; True when a cancel was requested, None when
        that run may no longer write (the solve was deleted, ended, or started again elsewhere)."""
        row = await self._fetchrow_or_none(
            "UPDATE solutions SET progress = $4::jsonb, progress_seq = progress_seq + 1 "
            f"WHERE workspace_id = $1 AND id = $2 AND status = {_RUNNING} AND attempts = $3 "
            "RETURNING cancel_requested, progress_seq",
            solution_id,
            attempt,
            _json(progress),
        )
        if row is None:
            return None
        await announce(self._conn, solution_id, StreamState("running", row["progress_seq"], progress, None))
        return bool(row["cancel_requested"])

    async def finish(
        self,
        solution_id: uuid.UUID,
        attempt: int,
        status: str,
        *,
        payload: dict[str, Any] | None,
        reason: str | None,
        progress: Progress | None,
    ) -> bool:
        """The final state of run `attempt`; False when that run may no longer write (see report)."""
        row = await self._fetchrow_or_none(
            f"""
            UPDATE solutions SET status = $4, payload = $5::jsonb, reason = $6,
                progress = COALESCE($7::jsonb, progress), progress_seq = progress_seq + 1,
                finished_at = now(), version = version + 1, updated_at = now()
            WHERE workspace_id = $1 AND id = $2 AND status = {_RUNNING} AND attempts = $3
            RETURNING progress_seq, progress::text AS progress, scenario_id, payload ->> 'distance' AS distance
            """,
            solution_id,
            attempt,
            status,
            _json(payload),
            reason,
            _json(progress),
        )
        if row is None:
            return False
        final = progress_from(row["progress"])
        await announce(self._conn, solution_id, StreamState(status, row["progress_seq"], final, reason))
        distance = row["distance"]
        await self._ended(
            solution_id, row["scenario_id"], status, None if distance is None else int(distance)
        )
        return True

    async def _ended(
        self, solution_id: uuid.UUID, scenario_id: uuid.UUID, status: str, distance: int | None
    ) -> None:
        """A solve ended `status`: its outbound webhooks are queued in this transaction, so they
        are sent exactly when the status change commits."""
        event = solution_event(status)
        body = solution_body(
            event,
            utcnow(),
            solution_id=solution_id,
            scenario_id=scenario_id,
            status=status,
            distance=distance,
        )
        # Outbound endpoints are the workspace's: whoever's transaction ends the solve (the worker, a
        # member cancelling), the solution's workspace is told.
        await DeliveryRepository(self._conn, workspace=self.workspace).enqueue(event, solution_id, body)

    async def requeue(self, solution_id: uuid.UUID, attempt: int) -> bool:
        """Back to pending (a worker shutting down hands run `attempt` back to the queue); False when
        that run no longer holds the solve."""
        row = await self._fetchrow_or_none(
            f"UPDATE solutions SET status = {_PENDING}, progress = NULL, progress_seq = progress_seq + 1, "
            "version = version + 1, updated_at = now() "
            f"WHERE workspace_id = $1 AND id = $2 AND status = {_RUNNING} AND attempts = $3 RETURNING progress_seq",
            solution_id,
            attempt,
        )
        if row is None:
            return False
        await announce(self._conn, solution_id, StreamState("pending", row["progress_seq"], None, None))
        return True
