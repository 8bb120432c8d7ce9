"""What the users API returns: never the internal columns (tombstones, provider timestamps)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel


class UserRead(BaseModel):
    id: uuid.UUID
    provider: str
    subject: str
    email: str | None
    roles: list[str]
    created_at: datetime


class UserAdminRead(BaseModel):
    id: uuid.UUID
    provider: str
    subject: str
    email: str | None
    display_name: str | None
    created_at: datetime
    deleted: bool
