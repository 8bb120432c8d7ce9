"""Every statement on `workspaces` and `memberships`. Functions take the caller's connection (inside a
privileged transaction: these tables are not the request role's) and never commit.

The rules they hold:
- A provider organisation has one workspace per (provider, organisation id), created on first sight
  (a token naming it, or any webhook about it) race-free: INSERT … ON CONFLICT DO NOTHING waits for a
  concurrent insert to commit, and the SELECT after it sees that row.
- A membership's `event_at` is the provider time of the last change applied. A change older than it
  is ignored, a removal included (`role` NULL stays as the removal's memory), so a token issued before
  a removal cannot re-create the membership, and one issued after a re-add can.
- A deleted organisation is a tombstone (`deleted_at`): nothing re-creates it, its data is erased.
- Every change that can narrow what a member may do is announced (NOTIFY on MEMBERSHIP_CHANNEL) in
  its transaction, so every instance drops its cached role once it commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from service.core.db import Connection, new_id, utcnow
from service.workspaces.models import Role, WorkspaceKind

MEMBERSHIP_CHANNEL = "routebook_memberships"
# Announced for a change to every membership of a workspace (its deletion).
EVERY_MEMBER = "*"

# What erasing a workspace's data takes, per domain (its solves stop, its planning rows go): run in
# the deletion's transaction, so a deletion is complete or not at all. Takes the workspace id.
WorkspaceEraser = Callable[[Connection, uuid.UUID], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WorkspaceRef:
    """A workspace as the request path needs it."""

    id: uuid.UUID
    kind: WorkspaceKind
    name: str


@dataclass(frozen=True, slots=True)
class MemberWorkspace:
    """One of a user's workspaces, with the user's role in it (GET /workspaces, /users/me)."""

    id: uuid.UUID
    kind: WorkspaceKind
    name: str
    role: Role
    provider: str | None
    provider_org_id: str | None
    created_at: datetime


def _uuid(value: uuid.UUID) -> uuid.UUID:
    # asyncpg's own UUID subclass: normalise, so every consumer sees uuid.UUID.
    return uuid.UUID(bytes=value.bytes)


async def announce(conn: Connection, workspace_id: uuid.UUID, user_id: uuid.UUID | None) -> None:
    """Tell every instance that a membership changed (`user_id` None: every member of the workspace);
    delivered when, and only if, the transaction commits."""
    who = EVERY_MEMBER if user_id is None else str(user_id)
    await conn.execute("SELECT pg_notify($1, $2)", MEMBERSHIP_CHANNEL, f"{workspace_id}:{who}")


# -- organisations ------------------------------------------------------------------------------


async def organization_workspace(
    conn: Connection, provider: str, org_id: str, *, name: str | None = None
) -> tuple[uuid.UUID, bool]:
    """(workspace id, deleted) of the provider's organisation, created on first sight (named `name`,
    or its id until an `organization.*` event names it)."""
    await conn.execute(
        "INSERT INTO workspaces (id, kind, provider, provider_org_id, name) "
        "VALUES ($1, 'organization', $2, $3, $4) "
        "ON CONFLICT (provider, provider_org_id) DO NOTHING",
        new_id(),
        provider,
        org_id,
        name or org_id,
    )
    row = await conn.fetchrow(
        "SELECT id, deleted_at FROM workspaces WHERE provider = $1 AND provider_org_id = $2", provider, org_id
    )
    assert row is not None  # inserted above, or by a transaction that committed before our SELECT
    return _uuid(row["id"]), row["deleted_at"] is not None


async def apply_organization(
    conn: Connection, provider: str, org_id: str, name: str, event_at: datetime | None
) -> bool:
    """An organisation created or updated at the provider: its workspace, created or renamed under the
    order guard (an event older than the last applied one is ignored; a deleted one stays deleted).
    True when something was written."""
    row = await conn.fetchrow(
        """
        INSERT INTO workspaces AS w (id, kind, provider, provider_org_id, name, provider_updated_at)
        VALUES ($1, 'organization', $2, $3, $4, $5)
        ON CONFLICT (provider, provider_org_id) DO UPDATE
            SET name = EXCLUDED.name, provider_updated_at = EXCLUDED.provider_updated_at, updated_at = now()
            WHERE w.deleted_at IS NULL
              AND (w.provider_updated_at IS NULL OR w.provider_updated_at <= EXCLUDED.provider_updated_at)
              AND (w.name, w.provider_updated_at) IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.provider_updated_at)
        RETURNING id
        """,
        new_id(),
        provider,
        org_id,
        name,
        event_at,
    )
    return row is not None


async def delete_organization(
    conn: Connection,
    provider: str,
    org_id: str,
    erasers: Sequence[WorkspaceEraser],
    *,
    event_at: datetime | None = None,
) -> uuid.UUID | None:
    """An organisation deleted at the provider: its workspace becomes a tombstone (a never-seen one
    too, so a late token or `created` cannot bring it back), every membership is removed, and
    `erasers` cancel its solves and erase its data in this transaction. Returns the workspace id when
    this call deleted it, None when it was deleted already."""
    workspace_id, deleted = await organization_workspace(conn, provider, org_id)
    # FOR UPDATE conflicts with the KEY SHARE lock a planning insert's foreign-key check holds: an
    # insert in flight commits first (the erase below sees it); a later one finds the tombstone
    # (trigger sessions_workspace_not_deleted, migration 0012).
    await conn.execute("SELECT 1 FROM workspaces WHERE id = $1 FOR UPDATE", workspace_id)
    if deleted:
        return None
    when = event_at or utcnow()
    await conn.execute(
        "UPDATE workspaces SET deleted_at = $2, updated_at = now() WHERE id = $1 AND deleted_at IS NULL",
        workspace_id,
        when,
    )
    await conn.execute(
        "UPDATE memberships SET role = NULL, event_at = GREATEST(event_at, $2), updated_at = now() "
        "WHERE workspace_id = $1",
        workspace_id,
        when,
    )
    for erase in erasers:
        await erase(conn, workspace_id)
    await announce(conn, workspace_id, None)
    return workspace_id


# -- memberships --------------------------------------------------------------------------------


async def user_for_subject(conn: Connection, provider: str, subject: str) -> uuid.UUID | None:
    """The local user of a provider subject, created on first sight (a membership webhook may come
    before the user's first request); None for a deleted (tombstoned) user."""
    await conn.execute(
        "INSERT INTO users (id, provider, subject) VALUES ($1, $2, $3) ON CONFLICT (provider, subject) DO NOTHING",
        new_id(),
        provider,
        subject,
    )
    row = await conn.fetchrow(
        "SELECT id, deleted_at FROM users WHERE provider = $1 AND subject = $2", provider, subject
    )
    assert row is not None
    return None if row["deleted_at"] is not None else _uuid(row["id"])


# One statement, so concurrent changes to one membership serialize on its row: ON CONFLICT DO UPDATE
# evaluates its WHERE against the latest committed version. An older event than the stored one
# writes nothing (a removal stored later wins over every earlier token or event), and neither does
# the same role (a replay, or a token repeating what is known).
_SET_MEMBERSHIP = """
    INSERT INTO memberships AS m (workspace_id, user_id, role, event_at)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (workspace_id, user_id) DO UPDATE
        SET role = EXCLUDED.role, event_at = EXCLUDED.event_at, updated_at = now()
        WHERE (m.event_at IS NULL OR m.event_at {order} EXCLUDED.event_at)
          AND m.role IS DISTINCT FROM EXCLUDED.role
    RETURNING role
"""


async def set_membership(
    conn: Connection,
    workspace_id: uuid.UUID,
    user_id: uuid.UUID,
    role: Role | None,
    event_at: datetime | None,
) -> bool:
    """Set (or, with `role` None, remove) one membership under the order guard; announce it. True when
    something was written. `event_at` None (a Routebook-managed change) is ordered after everything."""
    written = await conn.fetchrow(
        _SET_MEMBERSHIP.format(order="<="),
        workspace_id,
        user_id,
        None if role is None else str(role),
        event_at or utcnow(),
    )
    if written is None:
        return False
    await announce(conn, workspace_id, user_id)
    return True


async def apply_membership(
    conn: Connection,
    provider: str,
    org_id: str,
    subject: str,
    role: Role | None,
    event_at: datetime | None,
) -> bool:
    """A membership created, updated (`role`) or deleted (`role` None) at the provider, with the
    provider's event time: applied unless a newer change is stored (or the organisation or the user
    is deleted). The organisation's workspace and the user are created if not seen yet. True when
    something was written."""
    workspace_id, deleted = await organization_workspace(conn, provider, org_id)
    user_id = await user_for_subject(conn, provider, subject)
    if deleted or user_id is None:
        return False
    return await set_membership(conn, workspace_id, user_id, role, event_at)


async def ensure_organization_member(
    conn: Connection,
    provider: str,
    org_id: str,
    user_id: uuid.UUID,
    role: Role,
    issued_at: datetime,
) -> tuple[uuid.UUID, Role | None, datetime | None]:
    """What a verified token naming an organisation says, on first sight: the workspace (created if
    absent) and the caller's role in it. The token's role is stored unless the table holds a change
    newer than the token (`issued_at`, its `iat`) — a removal by webhook wins over every token issued
    before it. Returns (workspace id, the stored role — None when removed or the workspace is deleted —
    and the time of the change it stems from)."""
    workspace_id, deleted = await organization_workspace(conn, provider, org_id)
    if deleted:
        return workspace_id, None, None
    # Strictly newer than the stored change: a token issued in the same instant as a removal does not
    # undo it.
    written = await conn.fetchrow(
        _SET_MEMBERSHIP.format(order="<"), workspace_id, user_id, str(role), issued_at
    )
    if written is not None:
        await announce(conn, workspace_id, user_id)
        return workspace_id, role, issued_at
    stored, event_at = await membership(conn, workspace_id, user_id)
    return workspace_id, stored, event_at


async def role_of(conn: Connection, workspace_id: uuid.UUID, user_id: uuid.UUID) -> Role | None:
    """`user_id`'s role in a live workspace; None when not a member (or removed, or deleted)."""
    role = await conn.fetchval(
        "SELECT m.role FROM memberships m JOIN workspaces w ON w.id = m.workspace_id "
        "WHERE m.workspace_id = $1 AND m.user_id = $2 AND w.deleted_at IS NULL",
        workspace_id,
        user_id,
    )
    return None if role is None else Role(role)


async def membership(
    conn: Connection, workspace_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[Role | None, datetime | None]:
    """(role, time of the change it stems from) of a membership; (None, …) when removed or absent."""
    row = await conn.fetchrow(
        "SELECT role, event_at FROM memberships WHERE workspace_id = $1 AND user_id = $2",
        workspace_id,
        user_id,
    )
    if row is None:
        return None, None
    return (None if row["role"] is None else Role(row["role"])), row["event_at"]


async def workspace(conn: Connection, workspace_id: uuid.UUID) -> WorkspaceRef | None:
    row = await conn.fetchrow(
        "SELECT id, kind, name FROM workspaces WHERE id = $1 AND deleted_at IS NULL", workspace_id
    )
    return None if row is None else WorkspaceRef(_uuid(row["id"]), WorkspaceKind(row["kind"]), row["name"])


async def list_for_user(conn: Connection, user_id: uuid.UUID) -> list[MemberWorkspace]:
    """The user's live workspaces with their role, personal first, then oldest first."""
    rows = await conn.fetch(
        """
        SELECT w.id, w.kind, w.name, m.role, w.provider, w.provider_org_id, w.created_at
        FROM memberships m JOIN workspaces w ON w.id = m.workspace_id
        WHERE m.user_id = $1 AND m.role IS NOT NULL AND w.deleted_at IS NULL
        ORDER BY w.kind <> 'personal', w.created_at, w.id
        """,
        user_id,
    )
    return [
        MemberWorkspace(
            id=_uuid(row["id"]),
            kind=WorkspaceKind(row["kind"]),
            name=row["name"],
            role=Role(row["role"]),
            provider=row["provider"],
            provider_org_id=row["provider_org_id"],
            created_at=row["created_at"],
        )
        for row in rows
    ]
