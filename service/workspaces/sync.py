"""Organisation and membership events from the providers' webhooks, applied to workspaces.

The rules are the store's (`service.workspaces.store`): each change is ordered by the provider's
event time, so a late delivery never overwrites a newer change and a removal is remembered; a
deleted organisation stays deleted. This module maps the provider's roles onto workspace roles and
picks the store function. It runs in the webhook ledger's transaction, so an event and its ledger
row commit together, or neither does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from service.core.db import Connection
from service.providers.base import DEFAULT_ORG_ROLE_MAP
from service.providers.events import MembershipEvent, OrganizationEvent
from service.workspaces import store
from service.workspaces.access import WorkspaceAccess
from service.workspaces.models import Role

# provider name → its `<PROVIDER>_ORG_ROLE_MAP` (None for a provider without organisations)
RoleMaps = Callable[[str], Mapping[str, str] | None]


def workspace_role(mapping: Mapping[str, str], provider_role: str | None) -> Role:
    """A provider's organisation role through its role map; one the map does not name reads only."""
    mapped = mapping.get(provider_role) if provider_role is not None else None
    return Role(mapped) if mapped is not None else Role.VIEWER


class WorkspaceSync:
    """Applies one verified organisation or membership event (the webhook ledger's `OrganizationSync`)."""

    def __init__(self, access: WorkspaceAccess, role_maps: RoleMaps) -> None:
        self._access = access
        self._role_maps = role_maps

    async def apply(self, conn: Connection, event: OrganizationEvent | MembershipEvent) -> None:
        if isinstance(event, OrganizationEvent):
            await self._organization(conn, event)
        else:
            await self._membership(conn, event)

    async def _organization(self, conn: Connection, event: OrganizationEvent) -> None:
        if event.kind == "delete":
            # Final: every member loses access, its solves stop and its data is erased, here.
            await self._access.delete_organization(
                conn, event.provider, event.org_id, event_at=event.occurred_at
            )
            return
        # A nameless organisation keeps being called by its id, as on first sight by a token.
        name = event.name or event.org_id
        await store.apply_organization(conn, event.provider, event.org_id, name, event.occurred_at)

    async def _membership(self, conn: Connection, event: MembershipEvent) -> None:
        # A membership event may arrive before its organisation's (providers do not order them): the
        # store creates the workspace then, and the organisation's event names it when it comes.
        role = None
        if event.kind == "upsert":
            role = workspace_role(self._role_maps(event.provider) or DEFAULT_ORG_ROLE_MAP, event.role)
        await store.apply_membership(
            conn, event.provider, event.org_id, event.subject, role, event.occurred_at
        )
