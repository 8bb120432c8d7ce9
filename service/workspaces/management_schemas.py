"""What the workspace management routes take and return."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

from service.core.schemas import Body, Name, Read
from service.core.timestamps import Timestamp
from service.workspaces.models import Role


class WorkspaceCreate(Body):
    name: Name


class CreatedWorkspaceRead(Read):
    """A workspace as its creator sees it: an organisation workspace Routebook manages, they its admin."""

    id: uuid.UUID
    kind: str = Field(description="`organization`: a workspace with members (this one managed by Routebook)")
    name: str
    role: Role


class MemberUpdate(Body):
    role: Role = Field(description="`admin` also manages members; `member` writes and solves; `viewer` reads")


class MemberRead(Read):
    user_id: uuid.UUID
    role: Role
    email: str | None
    display_name: str | None
    created_at: Timestamp


class MemberList(BaseModel):
    """Every member of the workspace, in the order they joined."""

    items: list[MemberRead]
