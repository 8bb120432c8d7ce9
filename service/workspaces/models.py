"""The `workspaces` and `memberships` tables.

A personal workspace's id is its user's id: the default workspace of a request needs no lookup,
and moving today's rows into their owners' personal workspaces is `workspace_id = user_id`. Both
rows are created with the user, by a trigger on `users` (migration 0012), so no user is ever
without one, whichever code path inserted the user.

A removed membership stays as a row with `role` NULL and the removal's provider event time in
`event_at`: a token issued before the removal then cannot re-create it (the event-time guard in
`store.ensure_organization_member`). A deleted organisation keeps its row with `deleted_at` set,
for the same reason.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import CheckConstraint, Column, ForeignKey, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from service.core.db import new_id, timestamp_column, utcnow


class WorkspaceKind(enum.StrEnum):
    PERSONAL = "personal"
    ORGANIZATION = "organization"


class Role(enum.StrEnum):
    """A member's role in one workspace. Never a global role: it satisfies no ADMIN_ROLE check."""

    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"

    @classmethod
    def mapped(cls, mapping: Mapping[str, str], provider_role: str | None) -> Role:
        """A provider's organisation role (a token's, or a membership webhook's) through
        `<PROVIDER>_ORG_ROLE_MAP`; a role the map does not name reads only."""
        role = mapping.get(provider_role) if provider_role is not None else None
        return cls(role) if role is not None else cls.VIEWER

    @property
    def writes(self) -> bool:
        """Creates, edits, deletes, solves and cancels (row-level security holds the same rule)."""
        return self in (Role.ADMIN, Role.MEMBER)


def _sql_list(values: type[enum.StrEnum]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


class Workspace(SQLModel, table=True):
    __tablename__ = "workspaces"
    __table_args__ = (
        # One workspace per provider organisation (NULLs are distinct: personal and
        # Routebook-managed workspaces have neither).
        UniqueConstraint("provider", "provider_org_id"),
        CheckConstraint(f"kind IN {_sql_list(WorkspaceKind)}", name="kind"),
        CheckConstraint("(provider IS NULL) = (provider_org_id IS NULL)", name="provider_pair"),
        CheckConstraint("kind = 'organization' OR provider IS NULL", name="personal_has_no_provider"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    kind: str = Field(sa_type=Text, nullable=False)
    provider: str | None = Field(default=None, sa_type=Text)
    provider_org_id: str | None = Field(default=None, sa_type=Text)
    name: str = Field(sa_type=Text, nullable=False)
    created_by: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    )
    # The provider's time of the last organisation event applied: the order guard for late webhooks.
    provider_updated_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, server_default=False)
    )
    # A tombstone: set when the organisation is deleted, never cleared; its data is erased.
    deleted_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, server_default=False)
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class Membership(SQLModel, table=True):
    """A user's role in a workspace; `role` NULL is a removal, kept as the order guard's memory."""

    __tablename__ = "memberships"
    __table_args__ = (
        CheckConstraint(f"role IN {_sql_list(Role)}", name="role"),
        # "My workspaces" (GET /workspaces) and a removed user's memberships.
        Index(None, "user_id"),
    )

    workspace_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    )
    user_id: uuid.UUID = Field(sa_column=Column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True))
    role: str | None = Field(default=None, sa_type=Text)
    # The provider's time of the event behind the last change (NULL: none yet, e.g. a token's first
    # sight or a Routebook-managed change): an event older than this one is ignored.
    event_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, server_default=False)
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
