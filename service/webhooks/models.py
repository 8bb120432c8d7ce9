"""Deliveries already applied: the exactly-once ledger of webhook effects."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Text
from sqlmodel import Field, SQLModel

from service.core.db import timestamp_column, utcnow


class WebhookEvent(SQLModel, table=True):
    """Written in the same transaction as the event's effect; the primary key makes a second
    copy of the delivery (sequential or concurrent) a no-op."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index(None, "received_at"),)

    provider: str = Field(sa_type=Text, primary_key=True)
    event_id: str = Field(sa_type=Text, primary_key=True)
    event_type: str = Field(sa_type=Text)
    received_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
