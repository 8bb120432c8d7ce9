"""Tables of the solving domain (the queue's own tables belong to pgqueuer, migration 0007)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, LargeBinary
from sqlmodel import Field, SQLModel

from service.db import timestamp_column


class StreamTicket(SQLModel, table=True):
    """A single-use ticket to open one solution's event stream without an Authorization header (a
    browser's EventSource cannot send one). Only its SHA-256 is stored; it expires within a minute."""

    __tablename__ = "stream_tickets"
    __table_args__ = (Index(None, "expires_at"),)

    ticket_hash: bytes = Field(sa_type=LargeBinary, primary_key=True)
    user_id: uuid.UUID = Field(nullable=False)
    solution_id: uuid.UUID = Field(nullable=False)
    expires_at: datetime = Field(sa_column=timestamp_column(server_default=False))
