"""Tables of the solving domain: `solutions` (recorded by clients, or filled by solves) and stream
tickets. The queue's own tables belong to pgqueuer (migration 0007)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from service.core.db import new_id, timestamp_column, utcnow
from service.planning.models import newest_first
from service.solver.outcome import ACTIVE_STATUSES, SolutionStatus, sql_list


class Solution(SQLModel, table=True):
    __tablename__ = "solutions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["scenario_id", "workspace_id"], ["scenarios.id", "scenarios.workspace_id"], ondelete="CASCADE"
        ),
        CheckConstraint(f"status IN {sql_list(frozenset(SolutionStatus))}", name="status"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    workspace_id: uuid.UUID = Field(nullable=False)
    user_id: uuid.UUID = Field(nullable=False)  # the creator: who asked for the solve
    scenario_id: uuid.UUID = Field(nullable=False)
    status: str = Field(sa_type=Text, nullable=False)
    payload: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default=text("1")))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    # -- a solve's state (migration 0007); NULL/defaults for a solution a client recorded --------
    # The request as it was when the solve was queued: the scenario may change while it waits.
    request: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    scenario_version: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    time_limit_s: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    seed: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    progress: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    # Bumped with every progress write: the id of the server-sent event that carries it.
    progress_seq: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default=text("0")))
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    cancel_requested: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false"))
    )
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default=text("0")))
    started_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, server_default=False)
    )
    finished_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, server_default=False)
    )
    # -- a re-solve (migration 0013): the solution it started from, its pins, and that solution's
    # routes as they were when it was queued (the seed).
    from_solution: uuid.UUID | None = Field(default=None, nullable=True)
    pins: list[Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    seed_routes: list[Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))


newest_first(Solution, "scenario_id")
# Counts a user's pending and running solves (the SOLVE_MAX_ACTIVE_PER_USER check).
Index(
    "ix_solutions_user_id_active",
    Solution.__table__.c.user_id,  # type: ignore[attr-defined]
    postgresql_where=text(f"status IN {sql_list(ACTIVE_STATUSES)}"),
)
# Counts a workspace's pending and running solves (the SOLVE_MAX_ACTIVE_PER_WORKSPACE check).
Index(
    "ix_solutions_workspace_id_active",
    Solution.__table__.c.workspace_id,  # type: ignore[attr-defined]
    postgresql_where=text(f"status IN {sql_list(ACTIVE_STATUSES)}"),
)


class StreamTicket(SQLModel, table=True):
    """A single-use ticket to open one solution's event stream without an Authorization header (a
    browser's EventSource cannot send one). Only its SHA-256 is stored; it expires within a minute."""

    __tablename__ = "stream_tickets"
    __table_args__ = (Index(None, "expires_at"),)

    ticket_hash: bytes = Field(sa_type=LargeBinary, primary_key=True)
    workspace_id: uuid.UUID = Field(nullable=False)
    user_id: uuid.UUID = Field(nullable=False)
    solution_id: uuid.UUID = Field(nullable=False)
    expires_at: datetime = Field(sa_column=timestamp_column(server_default=False))
