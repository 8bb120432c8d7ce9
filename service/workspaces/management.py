"""Routebook-managed workspaces: creating one, and its admins adding, re-roling and removing members.

For providers without organisations (Supabase, dev) a workspace is created here, and its
memberships are ours to keep. A provider-synced workspace (an organisation of Clerk or WorkOS)
takes its memberships from the provider's webhooks and refuses every change here; a personal
workspace never has anyone but its user.

Every change runs in one transaction that first locks the workspace's row: changes to one
workspace's members are serialised, so two admins demoting each other at once cannot leave it
without an admin (the second sees the first's change and is refused). The change is announced in
the same transaction, so every instance drops its cached memberships when, and only when, it
commits.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from service.core.db import Connection, Database, new_id
from service.core.errors import Conflict, Forbidden, NotFound
from service.workspaces import store
from service.workspaces.models import Role, WorkspaceKind


@dataclass(frozen=True, slots=True)
class CreatedWorkspace:
    id: uuid.UUID
    kind: str
    name: str
    role: str


@dataclass(frozen=True, slots=True)
class MemberRecord:
    user_id: uuid.UUID
    role: str
    email: str | None
    display_name: str | None
    created_at: datetime


def _uuid(value: uuid.UUID) -> uuid.UUID:
    # asyncpg's own UUID subclass: normalise, so every consumer sees uuid.UUID.
    return uuid.UUID(bytes=value.bytes)


def _member(row: asyncpg.Record) -> MemberRecord:
    return MemberRecord(
        _uuid(row["user_id"]), row["role"], row["email"], row["display_name"], row["created_at"]
    )


# Both rows in one statement: the workspace is never seen without its admin.
_CREATE = """
    WITH workspace AS (
        INSERT INTO workspaces (id, kind, name, created_by)
        VALUES ($1, 'organization', $2, $3)
        RETURNING id, kind, name
    ), admin AS (
        INSERT INTO memberships (workspace_id, user_id, role)
        SELECT id, $3, 'admin' FROM workspace
    )
    SELECT id, kind, name FROM workspace
"""

# A live workspace's row, locked against every other change to its members until COMMIT.
_LOCK = "SELECT kind, provider FROM workspaces WHERE id = $1 AND deleted_at IS NULL FOR UPDATE"
_ROLE = "SELECT role FROM memberships WHERE workspace_id = $1 AND user_id = $2 AND role IS NOT NULL"
_ADMINS = "SELECT count(*) FROM memberships WHERE workspace_id = $1 AND role = 'admin'"
_LIVE_USER = "SELECT 1 FROM users WHERE id = $1 AND deleted_at IS NULL"

# The members of a live workspace, only when the caller ($2) is one of them: empty otherwise.
_MEMBERS = """
    SELECT m.user_id, m.role, u.email, u.display_name, m.created_at
    FROM memberships m JOIN users u ON u.id = m.user_id
    WHERE m.workspace_id = $1 AND m.role IS NOT NULL AND u.deleted_at IS NULL
      AND EXISTS (
        SELECT 1 FROM memberships me JOIN workspaces w ON w.id = me.workspace_id
        WHERE me.workspace_id = $1 AND me.user_id = $2 AND me.role IS NOT NULL
          AND w.deleted_at IS NULL
      )
    ORDER BY m.created_at, m.user_id
"""
# A row left by an earlier removal (role NULL) is taken over: the member joins again.
_SET_ROLE = """
    WITH written AS (
        INSERT INTO memberships AS m (workspace_id, user_id, role)
        VALUES ($1, $2, $3)
        ON CONFLICT (workspace_id, user_id) DO UPDATE
            SET role = EXCLUDED.role, updated_at = now()
        RETURNING m.user_id, m.role, m.created_at
    )
    SELECT m.user_id, m.role, u.email, u.display_name, m.created_at
    FROM written m JOIN users u ON u.id = m.user_id
"""
_REMOVE = "DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2"


class Management:
    """Workspace management for one caller, in one transaction (`ManagementScope.transaction`)."""

    def __init__(self, conn: Connection, *, caller: uuid.UUID) -> None:
        if not isinstance(caller, uuid.UUID):
            raise TypeError("Management is bound to its caller: caller must be a user id")
        self._conn = conn
        self._caller = caller

    @property
    def caller(self) -> uuid.UUID:
        return self._caller

    async def create(self, name: str) -> CreatedWorkspace:
        """A new Routebook-managed organisation workspace, with the caller as its admin."""
        row = await self._conn.fetchrow(_CREATE, new_id(), name, self._caller)
        assert row is not None  # an INSERT … RETURNING always returns its row
        return CreatedWorkspace(_uuid(row["id"]), row["kind"], row["name"], Role.ADMIN.value)

    async def members(self, workspace_id: uuid.UUID) -> list[MemberRecord]:
        """Every member of a workspace the caller belongs to; NotFound otherwise (as a missing one)."""
        rows = await self._conn.fetch(_MEMBERS, workspace_id, self._caller)
        if not rows:
            raise NotFound()  # the caller would be among them: not a member, or no such workspace
        return [_member(row) for row in rows]

    async def set_role(self, workspace_id: uuid.UUID, user_id: uuid.UUID, role: Role) -> MemberRecord:
        """Add `user_id` with `role`, or change their role (a role they already have changes nothing)."""
        await self._manageable(workspace_id)
        if await self._conn.fetchval(_LIVE_USER, user_id) is None:
            raise NotFound("No such user.")
        current = await self._conn.fetchval(_ROLE, workspace_id, user_id)
        if current == Role.ADMIN and role != Role.ADMIN:
            await self._keep_an_admin(workspace_id, "demoted")
        row = await self._conn.fetchrow(_SET_ROLE, workspace_id, user_id, role.value)
        assert row is not None
        if current != role:
            await store.announce(self._conn, workspace_id, user_id)
        return _member(row)

    async def remove(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> None:
        """Remove a member: their next request in this workspace, on any instance, is a 404."""
        await self._manageable(workspace_id)
        current = await self._conn.fetchval(_ROLE, workspace_id, user_id)
        if current is None:
            raise NotFound("No such member.")
        if current == Role.ADMIN:
            await self._keep_an_admin(workspace_id, "removed")
        await self._conn.execute(_REMOVE, workspace_id, user_id)
        await store.announce(self._conn, workspace_id, user_id)

    async def _manageable(self, workspace_id: uuid.UUID) -> None:
        """Lock the workspace; refuse unless the caller is its admin and its members are ours."""
        row = await self._conn.fetchrow(_LOCK, workspace_id)
        role = await self._conn.fetchval(_ROLE, workspace_id, self._caller) if row is not None else None
        if row is None or role is None:
            raise NotFound()  # a workspace the caller is not in answers as a missing one
        if role != Role.ADMIN:
            raise Forbidden("Only an admin of this workspace can manage its members.")
        if row["kind"] == WorkspaceKind.PERSONAL:
            raise Conflict("A personal workspace has no other members; create a workspace to share.")
        if row["provider"] is not None:
            raise Conflict(
                f"This workspace's members come from the identity provider ({row['provider']}): "
                "change them there."
            )

    async def _keep_an_admin(self, workspace_id: uuid.UUID, change: str) -> None:
        # The workspace row is locked: the count cannot change before this transaction commits.
        if await self._conn.fetchval(_ADMINS, workspace_id) <= 1:
            raise Conflict(
                f"The last admin of a workspace cannot be {change}; make another member admin first."
            )


@dataclass(frozen=True, slots=True)
class ManagementScope:
    """A caller's workspace management, reached one transaction at a time."""

    db: Database
    caller: uuid.UUID

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Management]:
        # Privileged: a workspace's members are other users' rows, read and written for its admin;
        # every statement names the workspace, and `Management` checks the caller's role in it first.
        async with self.db.privileged() as conn:
            yield Management(conn, caller=self.caller)
