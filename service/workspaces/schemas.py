"""What the workspaces API returns."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

from service.core.timestamps import Timestamp
from service.users.schemas import UserRead
from service.workspaces.models import Role, WorkspaceKind


class ActiveWorkspaceRead(BaseModel):
    """The workspace a request acts in, and the caller's role there (`/users/me`)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: WorkspaceKind
    name: str
    role: Role


class MeRead(UserRead):
    """The signed-in caller, and the workspace this request acts in with their role there."""

    workspace: ActiveWorkspaceRead


class WorkspaceRead(ActiveWorkspaceRead):
    """One of the caller's workspaces."""

    provider: str | None = Field(
        description="The identity provider whose organisation this is (its memberships come from the "
        "provider's webhooks and tokens); null for a personal or a Routebook-managed workspace."
    )
    created_at: Timestamp


class WorkspaceList(BaseModel):
    items: list[WorkspaceRead]
