"""The solve queue: pgqueuer's jobs table in our own PostgreSQL.

A job carries only which solution to solve and for whom; the request snapshot, options and state
live on the solution row. It is enqueued on the request's own connection, inside the transaction
that writes the pending solution, so there is never a job without its row nor a row without its
job. The dedupe key (the solution id) makes a second job for one solution impossible.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import orjson
from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.queries import Queries

from service.core.db import Connection

ENTRYPOINT = "solve"


@dataclass(frozen=True, slots=True)
class SolveJob:
    solution_id: uuid.UUID
    user_id: uuid.UUID

    def encode(self) -> bytes:
        return orjson.dumps({"solution_id": str(self.solution_id), "user_id": str(self.user_id)})

    @classmethod
    def decode(cls, payload: bytes | None) -> SolveJob:
        data = orjson.loads(payload or b"{}")
        return cls(solution_id=uuid.UUID(data["solution_id"]), user_id=uuid.UUID(data["user_id"]))


def queries_on(conn: Connection) -> Queries:
    """pgqueuer's operations on one of our connections (inside the caller's transaction)."""
    return Queries(AsyncpgDriver(conn))  # type: ignore[arg-type]  # a pooled connection proxies it


async def enqueue(conn: Connection, job: SolveJob) -> int:
    """Queue `job` in the caller's transaction: it becomes visible to workers when that commits."""
    (job_id,) = await queries_on(conn).enqueue(ENTRYPOINT, job.encode(), dedupe_key=str(job.solution_id))
    return int(job_id)
