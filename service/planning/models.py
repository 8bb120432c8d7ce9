"""Planning tables. Every row carries `user_id`; composite foreign keys keep it equal to the parent's."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from service.db import new_id, timestamp_column, utcnow

# A solution's status: the one list the table's check, the schemas and the solve code read.
SolutionState = Literal["pending", "running", "succeeded", "failed", "cancelled"]
SOLUTION_STATUSES: tuple[str, ...] = get_args(SolutionState)
ACTIVE_STATUSES = ("pending", "running")


class PlanningSession(SQLModel, table=True):
    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("id", "user_id"),  # the target of children's composite foreign keys
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    )
    name: str = Field(sa_type=Text, nullable=False)
    # Bumped on every write; the ETag (migration 0006).
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default=text("1")))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class Scenario(SQLModel, table=True):
    __tablename__ = "scenarios"
    __table_args__ = (
        ForeignKeyConstraint(
            ["session_id", "user_id"], ["sessions.id", "sessions.user_id"], ondelete="CASCADE"
        ),
        UniqueConstraint("id", "user_id"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(nullable=False)
    session_id: uuid.UUID = Field(nullable=False)
    name: str = Field(sa_type=Text, nullable=False)
    # NULL until edited, and then it reads as the original: a document of tens of megabytes is
    # stored once at creation, and a reset is `request = NULL` rather than a copy (migration 0004).
    request: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    original_request: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    # Bumped on every write; the ETag, so If-Match compares one integer, not megabytes of JSON.
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default=text("1")))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class Solution(SQLModel, table=True):
    __tablename__ = "solutions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["scenario_id", "user_id"], ["scenarios.id", "scenarios.user_id"], ondelete="CASCADE"
        ),
        CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in SOLUTION_STATUSES) + ")", name="status"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(nullable=False)
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


def _newest_first(model: type[SQLModel], parent_column: str) -> Index:
    """Serves "this parent's newest N" and keyset pagination on (created_at, id) descending."""
    table = model.__table__  # type: ignore[attr-defined]
    return Index(
        f"ix_{table.name}_{parent_column}_created_at_id",
        table.c[parent_column],
        table.c.created_at.desc(),
        table.c.id.desc(),
    )


_newest_first(PlanningSession, "user_id")
_newest_first(Scenario, "session_id")
_newest_first(Solution, "scenario_id")
# Counts a user's pending and running solves (the SOLVE_MAX_ACTIVE_PER_USER check).
Index(
    "ix_solutions_user_id_active",
    Solution.__table__.c.user_id,  # type: ignore[attr-defined]
    postgresql_where=text("status IN ('pending', 'running')"),
)
