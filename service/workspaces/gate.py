"""`CurrentMember`: the gate behind `CurrentUser` for every route on a workspace's data.

`Principal` → the request's workspace (the `Routebook-Workspace` header, else the token's active
organisation, else the personal workspace) → the caller's role in it, read from the memberships
table (cached per process and kept true by NOTIFY: `access.WorkspaceAccess`) → `Member`. A
workspace the caller is not a member of answers 404, exactly as a missing id would; so does a header
that is not a workspace id.
"""

from __future__ import annotations

import functools
import uuid
from typing import Annotated, NamedTuple

from fastapi import Depends, Request

from service.core.errors import NotFound
from service.core.headers import header
from service.deps import app_state
from service.users.gate import Principal, caller
from service.workspaces.access import Access, personal
from service.workspaces.models import Role
from service.workspaces.store import WorkspaceRef

WORKSPACE_HEADER = "Routebook-Workspace"
_HEADER_KEY = WORKSPACE_HEADER.lower().encode("latin-1")


class Member(NamedTuple):
    """The caller acting in the request's workspace, with their role there (never a global role).

    A NamedTuple rather than a frozen dataclass: built on every request, and compared with the one
    /users/me's body was built for, where C-level construction and equality are measurably cheaper.
    """

    principal: Principal
    workspace: WorkspaceRef
    role: Role

    @property
    def user_id(self) -> uuid.UUID:
        return self.principal.user_id


# Longer than any spelling of a UUID (`urn:uuid:` and 36 characters is 45) with some spaces around.
_MEMO_MAX_CHARS = 64


def _workspace_id(named: str) -> uuid.UUID | None:
    """The workspace id a header names; None for a value that is not one. Kept per value (a client
    sends the same one on every request, and parsing it costs more than the rest of the check),
    unless it is too long to be one: the memo never holds a client's kilobytes."""
    return _parsed(named) if len(named) <= _MEMO_MAX_CHARS else _parse(named)


def _parse(named: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(named.strip())
    except ValueError:
        return None


_parsed = functools.lru_cache(maxsize=10_000)(_parse)


async def current_member(request: Request) -> Member:
    """The caller in the request's workspace; 404 when they are not (or no longer) a member of it."""
    # Called, not declared as a dependency: one node less for FastAPI to resolve on every request
    # (the caller is kept for the request, so a router's own CurrentUser does not verify the token
    # twice).
    state = app_state(request)
    principal = await caller(request, state)
    named = header(request.scope, _HEADER_KEY)
    found: Access | None
    if named is not None:
        workspace_id = _workspace_id(named)
        if workspace_id is None:
            raise NotFound()
        if workspace_id == principal.user_id:
            return Member(principal, personal(principal.user_id), Role.ADMIN)
        # The membership, asked on every request: from the cache when it holds it, else the table.
        found = state.workspaces.cached(workspace_id, principal.user_id)
        if found is None:
            found = await state.workspaces.access(workspace_id, principal.user_id)
    else:
        org = principal.org
        if org is None or not org.id:
            return Member(principal, personal(principal.user_id), Role.ADMIN)
        mapping = state.settings.org_role_map(principal.provider)
        if mapping is None:
            return Member(principal, personal(principal.user_id), Role.ADMIN)
        found = await state.workspaces.organization(
            principal.provider,
            org.id,
            principal.user_id,
            Role.mapped(mapping, org.role),
            principal.issued_at,
        )
    if found is None or found.role is None:
        raise NotFound()
    return Member(principal, found.workspace, found.role)


CurrentMember = Annotated[Member, Depends(current_member)]
