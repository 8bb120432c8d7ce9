"""What a provider tells us about its users and organisations, in one provider-neutral vocabulary.

Provider modules turn their webhook bodies and user-list API records into these; the identity
service (`service.users.identity`) applies the user and session events, the workspace sync
(`service.workspaces.sync`) the organisation and membership events. Whatever is returned is storable as it is: the
parsers refuse what PostgreSQL could not hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

EventKind = Literal["upsert", "delete", "session_revoked", "ignored"]


class MalformedPayload(Exception):
    """A verified body (or API record) that is not a usable event (→ 400)."""


@dataclass(frozen=True)
class ProviderUser:
    """A user as a provider describes it: the fields Routebook keeps, nothing more.

    `deleted` is a user the provider still lists but has deleted (Supabase's soft delete).
    """

    subject: str
    email: str | None
    display_name: str | None
    updated_at: datetime | None
    deleted: bool = False


@dataclass(frozen=True)
class UserEvent:
    """What a delivery asks of us. `updated_at` is tz-aware UTC; `event_id` is the de-duplication key
    (None for a provider without a stable one, whose effects are idempotent instead)."""

    kind: EventKind
    provider: str
    event_id: str | None
    subject: str | None
    email: str | None
    display_name: str | None
    updated_at: datetime | None
    session_id: str | None
    event_type: str

    @property
    def user(self) -> ProviderUser:
        """The upserted user (only meaningful for kind == "upsert")."""
        if self.subject is None:
            raise ValueError(f"a {self.kind} event carries no user")
        return ProviderUser(self.subject, self.email, self.display_name, self.updated_at)


def upsert_event(provider: str, event_id: str | None, event_type: str, user: ProviderUser) -> UserEvent:
    return UserEvent(
        kind="upsert",
        provider=provider,
        event_id=event_id,
        subject=user.subject,
        email=user.email,
        display_name=user.display_name,
        updated_at=user.updated_at,
        session_id=None,
        event_type=event_type,
    )


def bare_event(
    kind: EventKind,
    provider: str,
    event_id: str | None,
    event_type: str,
    *,
    subject: str | None = None,
    updated_at: datetime | None = None,
    session_id: str | None = None,
) -> UserEvent:
    """An event without user fields: a deletion, a revoked session, or one we ignore."""
    return UserEvent(
        kind=kind,
        provider=provider,
        event_id=event_id,
        subject=subject,
        email=None,
        display_name=None,
        updated_at=updated_at,
        session_id=session_id,
        event_type=event_type,
    )


ChangeKind = Literal["upsert", "delete"]


@dataclass(frozen=True)
class OrganizationEvent:
    """An organisation created, renamed or deleted at the provider. `occurred_at` (tz-aware UTC) is
    when the provider made the change: the order guard compares it, never the arrival order."""

    kind: ChangeKind
    provider: str
    event_id: str
    event_type: str
    org_id: str
    name: str | None
    occurred_at: datetime | None


@dataclass(frozen=True)
class MembershipEvent:
    """A user's membership of an organisation created, changed or ended at the provider.

    `role` is the provider's role name without any provider prefix (Clerk's "org:admin" → "admin"),
    not yet mapped to a workspace role: the mapping is configuration, applied where it is stored.
    A delete carries no role.
    """

    kind: ChangeKind
    provider: str
    event_id: str
    event_type: str
    org_id: str
    subject: str
    role: str | None
    occurred_at: datetime | None


# Everything a webhook delivery can be read into.
ProviderEvent = UserEvent | OrganizationEvent | MembershipEvent
