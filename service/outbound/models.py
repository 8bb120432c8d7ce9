"""Tables of outbound webhooks: a workspace's endpoints, the deliveries queued for them and every
attempt to send one. Each row carries its owner, `workspace_id` (an endpoint also its creator,
`user_id`); composite foreign keys keep a child in its parent's workspace, and row-level security
binds it like the planning tables (migration 0014)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
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
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from service.core.db import new_id, timestamp_column, utcnow
from service.outbound.events import DELIVERY_STATUSES, EVENT_TYPES
from service.planning.models import newest_first

_EVENTS = ", ".join(f"'{event}'" for event in EVENT_TYPES)
_STATUSES = ", ".join(f"'{status}'" for status in DELIVERY_STATUSES)


class WebhookEndpoint(SQLModel, table=True):
    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        UniqueConstraint("id", "workspace_id"),  # the target of deliveries' composite foreign key
        CheckConstraint(f"events <@ ARRAY[{_EVENTS}]::text[] AND cardinality(events) > 0", name="events"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    workspace_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    )
    # The member who registered it (shown as `created_by`); the workspace owns it.
    user_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    )
    url: str = Field(sa_type=Text, nullable=False)
    events: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    # The signing key: shown to its owner once; needed in clear to sign every delivery.
    secret: str = Field(sa_type=Text, nullable=False)
    enabled: bool = Field(
        default=True, sa_column=Column(Boolean, nullable=False, server_default=text("true"))
    )
    disabled_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint; its id is the `webhook-id` of every attempt to send it."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        ForeignKeyConstraint(
            ["endpoint_id", "workspace_id"],
            ["webhook_endpoints.id", "webhook_endpoints.workspace_id"],
            ondelete="CASCADE",
            # The conventional name is one character over PostgreSQL's 63.
            name="fk_webhook_deliveries_endpoint_workspace_webhook_endpoints",
        ),
        UniqueConstraint("id", "workspace_id"),
        CheckConstraint(f"status IN ({_STATUSES})", name="status"),
        CheckConstraint(f"event_type IN ({_EVENTS})", name="event_type"),
        # The dispatcher's claim: pending deliveries, soonest first.
        Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        # The purge: bodies still kept, oldest first.
        Index(
            "ix_webhook_deliveries_body_expires_at",
            "body_expires_at",
            postgresql_where=text("body_expires_at IS NOT NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    workspace_id: uuid.UUID = Field(nullable=False)
    endpoint_id: uuid.UUID = Field(nullable=False)
    event_type: str = Field(sa_type=Text, nullable=False)
    solution_id: uuid.UUID = Field(nullable=False)
    # The exact bytes signed and sent; NULL once older than a week (with body_expires_at).
    body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    body_expires_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, server_default=False)
    )
    status: str = Field(sa_type=Text, nullable=False)
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default=text("0")))
    # When the next attempt is due; while one is under way, when its claim lapses.
    next_attempt_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, server_default=False)
    )
    # While an attempt is under way: until when its claim holds (a replay waits for it to end).
    claimed_until: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, server_default=False)
    )
    # Retries stop here: a day after the event (or after a replay).
    retry_until: datetime = Field(sa_column=timestamp_column(server_default=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class WebhookAttempt(SQLModel, table=True):
    """One try at sending a delivery: what came back, and how long it took."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (
        ForeignKeyConstraint(
            ["delivery_id", "workspace_id"],
            ["webhook_deliveries.id", "webhook_deliveries.workspace_id"],
            ondelete="CASCADE",
        ),
        Index(None, "delivery_id", "attempted_at"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    workspace_id: uuid.UUID = Field(nullable=False)
    delivery_id: uuid.UUID = Field(nullable=False)
    attempted_at: datetime = Field(sa_column=timestamp_column(server_default=False))
    status_code: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    duration_ms: int = Field(sa_column=Column(Integer, nullable=False))
    # A class of failure (`timeout`, `connect`, `status`, …), never the receiver's text.
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


newest_first(WebhookEndpoint, "workspace_id")
newest_first(WebhookDelivery, "endpoint_id")
