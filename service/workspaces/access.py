"""Who may act in which workspace, asked on every request and answered from memory.

`WorkspaceAccess` caches (workspace, user) → role and (provider, organisation) → workspace per
process. It stays correct across processes like the identity caches: every membership change is
announced (NOTIFY on MEMBERSHIP_CHANNEL) in the transaction that makes it, and every instance drops
what it cached once that commits, so a removal reaches every instance as fast as NOTIFY travels.
While the listener is down nothing is cached and every request reads the table.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from service.core.db import Connection, Database
from service.workspaces import store
from service.workspaces.models import Role, WorkspaceKind
from service.workspaces.store import EVERY_MEMBER, MemberWorkspace, WorkspaceEraser, WorkspaceRef

log = logging.getLogger("routebook.workspaces")

# Defence in depth: even with a live listener, a cached role is re-read after this long.
CACHE_TTL_SECONDS = 300.0
CACHE_SIZE = 100_000
PERSONAL_NAME = "Personal"


@dataclass(frozen=True, slots=True)
class Access:
    """A caller's standing in one workspace: `role` None means no access at all (answered as 404)."""

    workspace: WorkspaceRef
    role: Role | None
    # The provider time of the change the role stems from (organisation memberships): a token issued
    # after it may still change the role, so a cached answer does not outlive such a token.
    event_at: datetime | None = None


@dataclass(slots=True)
class _Entry:
    access: Access
    expires: float


@functools.lru_cache(maxsize=100_000)
def personal(user_id: uuid.UUID) -> WorkspaceRef:
    """A user's personal workspace: its id is theirs, so it needs no lookup (migration 0012). Kept
    per user: asked for on most requests, and a frozen dataclass costs a microsecond to build."""
    return WorkspaceRef(user_id, WorkspaceKind.PERSONAL, PERSONAL_NAME)


class WorkspaceAccess:
    """One per app instance (`AppState.workspaces`)."""

    def __init__(self, db: Database, *, erasers: Sequence[WorkspaceEraser] = ()) -> None:
        self._db = db
        self._erasers = tuple(erasers)
        self._access: OrderedDict[tuple[uuid.UUID, uuid.UUID], _Entry] = OrderedDict()
        self._organizations: dict[tuple[str, str], uuid.UUID] = {}
        self.live = False
        # Bumped by every announcement: a lookup that raced one is not cached (it may be stale).
        self._generation = 0

    async def access(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> Access | None:
        """The user's standing in a workspace; None when the workspace does not exist for them."""
        cached = self.cached(workspace_id, user_id)
        if cached is not None:
            return cached
        generation = self._generation
        # Privileged: memberships are not the request role's to read; this is the check itself.
        async with self._db.privileged() as conn:
            workspace = await store.workspace(conn, workspace_id)
            role = None if workspace is None else await store.role_of(conn, workspace_id, user_id)
        if workspace is None:
            return None
        found = Access(workspace, role)
        self._remember(workspace_id, user_id, found, generation)
        return found

    async def organization(
        self, provider: str, org_id: str, user_id: uuid.UUID, role: Role, issued_at: float | None
    ) -> Access:
        """The caller's standing in the organisation a verified token names: its workspace and the
        membership are created on first sight with the token's `role`, unless a change newer than
        the token is stored (a removal by webhook wins over every token issued before it)."""
        issued = datetime.fromtimestamp(issued_at if issued_at is not None else time.time(), UTC)
        workspace_id = self._organizations.get((provider, org_id)) if self.live else None
        if workspace_id is not None:
            cached = self.cached(workspace_id, user_id)
            if cached is not None and (
                cached.role == role or cached.event_at is None or cached.event_at >= issued
            ):
                return cached
        generation = self._generation
        # Privileged: the organisation's workspace and membership are created here, across users.
        async with self._db.privileged() as conn:
            workspace_id, stored, event_at = await store.ensure_organization_member(
                conn, provider, org_id, user_id, role, issued
            )
            workspace = await store.workspace(conn, workspace_id)
        if workspace is None:  # deleted: nobody's
            return Access(WorkspaceRef(workspace_id, WorkspaceKind.ORGANIZATION, org_id), None)
        if self.live:
            self._organizations[(provider, org_id)] = workspace_id
        found = Access(workspace, stored, event_at)
        self._remember(workspace_id, user_id, found, generation)
        return found

    async def delete_organization(
        self, conn: Connection, provider: str, org_id: str, *, event_at: datetime | None = None
    ) -> uuid.UUID | None:
        """An organisation deleted at the provider, in the caller's privileged transaction: its
        workspace is tombstoned, its solves cancelled and its data erased (`store.delete_organization`
        with the erasers this app was built with). The workspace id when this call deleted it."""
        return await store.delete_organization(conn, provider, org_id, self._erasers, event_at=event_at)

    async def list_for(self, user_id: uuid.UUID) -> list[MemberWorkspace]:
        """Every live workspace the user is a member of, with their role (GET /workspaces)."""
        # Privileged: memberships are not the request role's to read; only the caller's are read.
        async with self._db.privileged() as conn:
            return await store.list_for_user(conn, user_id)

    def cached(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> Access | None:
        """`access` when this instance holds the answer (None when it does not): the gate asks this
        first, and awaits `access` only on a miss."""
        if not self.live:
            return None
        entry = self._access.get((workspace_id, user_id))
        if entry is None or entry.expires <= time.monotonic():
            return None
        return entry.access

    def _remember(self, workspace_id: uuid.UUID, user_id: uuid.UUID, access: Access, generation: int) -> None:
        if not self.live or generation != self._generation:
            return
        key = (workspace_id, user_id)
        self._access[key] = _Entry(access, time.monotonic() + CACHE_TTL_SECONDS)
        self._access.move_to_end(key)
        while len(self._access) > CACHE_SIZE:
            self._access.popitem(last=False)

    # --- coherence: what the listener calls --------------------------------------------------

    async def go_live(self) -> None:
        self._generation += 1
        self._access.clear()
        self.live = True

    def go_blind(self) -> None:
        self.live = False
        self._generation += 1
        self._access.clear()
        self._organizations.clear()

    def announced(self, payload: str) -> None:
        """`<workspace id>:<user id>`, or `<workspace id>:*` for every member (from any instance)."""
        workspace, _, user = payload.partition(":")
        self._generation += 1
        try:
            workspace_id = uuid.UUID(workspace)
            if user == EVERY_MEMBER:
                for key in [key for key in self._access if key[0] == workspace_id]:
                    del self._access[key]
            else:
                self._access.pop((workspace_id, uuid.UUID(user)), None)
        except ValueError:
            log.warning("unreadable membership announcement")
            self._access.clear()
