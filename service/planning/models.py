"""Planning tables (sessions, scenarios). Every row carries its owner, `workspace_id`, and its creator,
`user_id`; composite foreign keys keep a child in its parent's workspace. `solutions` hang off
scenarios the same way and belong to solving."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from service.core.db import new_id, timestamp_column, utcnow


class PlanningSession(SQLModel, table=True):
    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("id", "workspace_id"),  # the target of children's composite foreign keys
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    workspace_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    )
    # The creator (shown as `created_by`); the workspace owns the row.
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
            ["session_id", "workspace_id"], ["sessions.id", "sessions.workspace_id"], ondelete="CASCADE"
        ),
        UniqueConstraint("id", "workspace_id"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    workspace_id: uuid.UUID = Field(nullable=False)
    user_id: uuid.UUID = Field(nullable=False)  # the creator
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
    # The current request's JSON text as PostgreSQL renders it, stored in the background after a
    # write, and read only while `request_text_version` is `version` (service/planning/request_texts.py,
    # migration 0016): a large GET then sends stored bytes instead of rendering the JSONB again.
    request_text: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    request_text_version: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))


def newest_first(model: type[SQLModel], parent_column: str) -> Index:
    """Serves "this parent's newest N" and keyset pagination on (created_at, id) descending."""
    table = model.__table__  # type: ignore[attr-defined]
    return Index(
        f"ix_{table.name}_{parent_column}_created_at_id",
        table.c[parent_column],
        table.c.created_at.desc(),
        table.c.id.desc(),
    )


newest_first(PlanningSession, "workspace_id")
newest_first(Scenario, "session_id")
