"""The solve queue: pgqueuer's jobs table in our own PostgreSQL. Every pgqueuer call is here.

A job carries only which solution to solve and for whom (and, when tracing is on, the W3C trace
context of the request that queued it); the request snapshot, options and state live on the
solution row. It is enqueued on the request's own connection, inside the transaction
that writes the pending solution, so there is never a job without its row nor a row without its
job. The dedupe key (the solution id) makes a second job for one solution impossible.

The worker's side — take a job, renew its lease, close it, hand it back — runs through the pool in
short transactions of its own; no queue operation needs a session of its own (LISTEN does: the
worker's wake-ups come through `core.notify.Listener` on QUEUE_CHANNEL).

Why not pgqueuer's QueueManager: it dispatches every job it picks at once and its per-worker cap is
at least two (max_concurrent_tasks ≥ 2 × batch_size), while a solve holds a CPU core for its whole
time limit. So the worker takes one job whenever one of its slots is free, with pgqueuer's own
statements (dequeue with FOR UPDATE SKIP LOCKED, the completion log).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import orjson
from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.domain.settings import DBSettings
from pgqueuer.models import Job
from pgqueuer.queries import EntrypointExecutionParameter, Queries

from service.core import tracing
from service.core.db import Connection
from service.solver.outcome import ACTIVE_STATUSES, sql_list

__all__ = ["QUEUE_CHANNEL", "Job", "SolveJob"]

ENTRYPOINT = "solve"
# pgqueuer announces every enqueued job on this channel.
QUEUE_CHANNEL = DBSettings().channel
# How a job ends in the queue's log.
JobEnd = Literal["successful", "canceled", "deleted"]


@dataclass(frozen=True, slots=True)
class SolveJob:
    solution_id: uuid.UUID
    user_id: uuid.UUID  # who queued it
    workspace_id: uuid.UUID  # whose it is: the worker writes in this workspace
    # `traceparent` (and `tracestate`) of the span that queued it: the worker continues that trace.
    trace: dict[str, str] = field(default_factory=dict, compare=False)

    def encode(self) -> bytes:
        data: dict[str, object] = {
            "solution_id": str(self.solution_id),
            "user_id": str(self.user_id),
            "workspace_id": str(self.workspace_id),
        }
        if self.trace:
            data["trace"] = self.trace
        return orjson.dumps(data)

    @classmethod
    def decode(cls, payload: bytes | None) -> SolveJob:
        data = orjson.loads(payload or b"{}")
        carried = data.get("trace")
        user_id = uuid.UUID(data["user_id"])
        return cls(
            solution_id=uuid.UUID(data["solution_id"]),
            user_id=user_id,
            # A job queued before workspaces existed is its user's: their personal workspace has their id.
            workspace_id=uuid.UUID(data["workspace_id"]) if "workspace_id" in data else user_id,
            trace={str(k): str(v) for k, v in carried.items()} if isinstance(carried, dict) else {},
        )


def _queries(conn: Connection) -> Queries:
    """pgqueuer's operations on one of our connections (inside the caller's transaction)."""
    return Queries(AsyncpgDriver(conn))  # type: ignore[arg-type]  # a pooled connection proxies it


async def enqueue(conn: Connection, job: SolveJob) -> int:
    """Queue `job` in the caller's transaction: it becomes visible to workers when that commits."""
    with tracing.span(
        "enqueue solve",
        kind=tracing.SpanKind.PRODUCER,
        attributes={"routebook.solution.id": str(job.solution_id)},
    ) as span:
        traced = SolveJob(job.solution_id, job.user_id, job.workspace_id, trace=tracing.inject())
        (job_id,) = await _queries(conn).enqueue(ENTRYPOINT, traced.encode(), dedupe_key=str(job.solution_id))
        span.set_attribute("routebook.job.id", int(job_id))
    return int(job_id)


async def take(conn: Connection, *, worker_id: uuid.UUID, lease: timedelta) -> Job | None:
    """The next job for `worker_id`: a queued one, or one whose worker fell silent for `lease`."""
    jobs = await _queries(conn).dequeue(
        batch_size=1,
        entrypoints={ENTRYPOINT: EntrypointExecutionParameter(concurrency_limit=0)},  # type: ignore[dict-item]
        queue_manager_id=worker_id,  # type: ignore[arg-type]  # a NewType of uuid.UUID
        global_concurrency_limit=None,
        heartbeat_timeout=lease,
    )
    return jobs[0] if jobs else None


# This worker's jobs: their heartbeat, and whether each is still this worker's.
_RENEW = """
    UPDATE pgqueuer SET heartbeat = now()
    WHERE id = ANY($1::bigint[]) AND queue_manager_id = $2 AND status = 'picked'
    RETURNING id
"""


# Every status a job can have in the queue, each counted even when no job has it.
QUEUE_STATUSES = ("queued", "picked")


async def depth(conn: Connection) -> dict[str, int]:
    """How many solve jobs the queue holds, by status."""
    rows = await conn.fetch(
        "SELECT status::text, count(*) AS jobs FROM pgqueuer WHERE entrypoint = $1 GROUP BY status",
        ENTRYPOINT,
    )
    counts = {row["status"]: int(row["jobs"]) for row in rows}
    return {status: counts.get(status, 0) for status in QUEUE_STATUSES}


async def renew(conn: Connection, job_ids: list[int], *, worker_id: uuid.UUID) -> set[int]:
    """Renew the lease of `job_ids`; the ones still held by `worker_id` (the others were taken over)."""
    return {row["id"] for row in await conn.fetch(_RENEW, job_ids, worker_id)}


async def close(conn: Connection, job: Job, end: JobEnd) -> None:
    """The job leaves the queue for its log."""
    await _queries(conn).log_jobs([(job, end, None)])


async def hand_back(conn: Connection, job: Job) -> None:
    """Back in the queue at once (a worker shutting down): any worker may take it."""
    await _queries(conn).retry_job(job, timedelta(0), None)


async def drop_queued(conn: Connection, solution_ids: list[str]) -> None:
    """Jobs still waiting for solutions that are gone (their owner was deleted)."""
    await conn.execute(
        "DELETE FROM pgqueuer WHERE dedupe_key = ANY($1::text[]) AND status = 'queued'", solution_ids
    )


async def close_abandoned(conn: Connection, solution_id: uuid.UUID, *, lease: timedelta) -> bool:
    """Close the job of `solution_id` if its worker fell silent for `lease` (`canceled` in the log);
    False when the solve has a live job still (queued, or picked by a worker that is alive)."""
    await conn.execute(
        """
        WITH closed AS (
            DELETE FROM pgqueuer WHERE dedupe_key = $1 AND status = 'picked' AND heartbeat < now() - $2::interval
            RETURNING id, entrypoint, priority
        )
        INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority)
        SELECT id, 'canceled', entrypoint, priority FROM closed
        """,
        str(solution_id),
        lease,
    )
    live: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pgqueuer WHERE dedupe_key = $1 AND status IN ('queued', 'picked'))",
        str(solution_id),
    )
    return not live


@dataclass(frozen=True, slots=True)
class StrandedSolve:
    id: uuid.UUID
    user_id: uuid.UUID
    workspace_id: uuid.UUID
    cancel_requested: bool


# A pending or running solve whose job is no longer in the queue, or whose cancel no worker will
# carry out (its job is held by a worker that fell silent, $2 ago): nothing else will ever finish it.
# $1: how long it must have been so (its last change is older), $2: the lease. As the sweeper role.
_STRANDED = f"""
    SELECT s.id, s.user_id, s.workspace_id, s.cancel_requested FROM solutions s
    WHERE s.status IN {sql_list(ACTIVE_STATUSES)} AND s.updated_at < now() - $1::interval
      AND NOT EXISTS (
        SELECT 1 FROM pgqueuer q
        WHERE q.dedupe_key = s.id::text
          AND (q.status = 'queued'
               OR (q.status = 'picked' AND (NOT s.cancel_requested OR q.heartbeat >= now() - $2::interval)))
      )
    ORDER BY s.updated_at LIMIT 100
"""


async def stranded_solves(
    conn: Connection, *, stranded_for: timedelta, lease: timedelta
) -> list[StrandedSolve]:
    """Every user's solves that nothing will finish (see _STRANDED), oldest first; in a transaction
    of `Database.as_sweeper()`."""
    rows = await conn.fetch(_STRANDED, stranded_for, lease)
    return [
        StrandedSolve(row["id"], row["user_id"], row["workspace_id"], row["cancel_requested"]) for row in rows
    ]
