"""The `users` table: a local row per (provider, subject)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from service.core.db import new_id, timestamp_column, utcnow


class User(SQLModel, table=True):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("provider", "subject"),
        # Admin listing pages newest first by (created_at, id).
        Index(None, "created_at", "id"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    provider: str = Field(sa_type=Text, nullable=False)
    subject: str = Field(sa_type=Text, nullable=False)
    email: str | None = Field(default=None, sa_type=Text)
    display_name: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    # The provider's own updated_at of the last applied webhook: the order guard for late deliveries.
    provider_updated_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, server_default=False)
    )
    # A tombstone: set on deletion, never cleared, so late events cannot resurrect the user.
    deleted_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, server_default=False)
    )


class RevokedSession(SQLModel, table=True):
    """A provider session ended or revoked by webhook: tokens carrying its id are refused.

    Kept until every token of that session has expired anyway (`expires_at`), then purged.
    """

    __tablename__ = "revoked_sessions"
    __table_args__ = (Index(None, "expires_at"),)

    provider: str = Field(sa_type=Text, primary_key=True)
    session_id: str = Field(sa_type=Text, primary_key=True)
    subject: str | None = Field(default=None, sa_type=Text)
    revoked_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    expires_at: datetime = Field(sa_column=timestamp_column(server_default=False))
