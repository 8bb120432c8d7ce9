"""Clerk: session tokens (RS256, issuer = the Frontend API URL), Svix-signed webhooks, the Backend API.

Global roles come from the session-token template's `metadata` (the user's public metadata, which
only the backend can set); the organisation (`o` in v2 tokens, `org_*` in v1) is carried apart.
Clerk sends session revocations, so its session tokens are checked against them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from service.auth.keys import KeySource, StaticKeys
from service.auth.profile import ClaimCheck, ProviderProfile
from service.providers import fields
from service.providers.api import PAGE_SIZE, PagingGuard, api_key, fetch_one, get_json, users_from
from service.providers.base import DEFAULT_ORG_ROLE_MAP, CommaList, KeyContext, Provider, RoleMap, configured
from service.providers.events import (
    MembershipEvent,
    ProviderEvent,
    ProviderUser,
    bare_event,
    upsert_event,
)
from service.providers.webhook_auth import lowered, split_secrets, verification, verify_standard_webhooks

NAME = "clerk"
UPSERT = frozenset({"user.created", "user.updated"})
SESSION_END = frozenset({"session.revoked", "session.ended", "session.removed"})
ORGANIZATION_UPSERT = frozenset({"organization.created", "organization.updated"})
MEMBERSHIP_UPSERT = frozenset({"organizationMembership.created", "organizationMembership.updated"})
ORG_ROLE_PREFIX = "org:"
DEFAULT_ROLES_CLAIMS = ("metadata.role", "metadata.roles")
# The organisation claims (v2 `o`, v1 `org_*`): any user can create an organisation and be its admin.
_ORG_CLAIMS = frozenset({"o", "org_id", "org_slug", "org_role", "org_permissions"})


class ClerkSettings(BaseSettings):
    clerk_issuer: str | None = None
    clerk_jwks_url: str | None = None
    clerk_jwt_key: str | None = None
    clerk_authorized_parties: CommaList = []
    clerk_webhook_secret: SecretStr | None = None
    clerk_secret_key: SecretStr | None = None
    clerk_api_url: str = "https://api.clerk.com"
    clerk_roles_claims: CommaList | None = None
    clerk_org_role_map: RoleMap = Field(default_factory=lambda: dict(DEFAULT_ORG_ROLE_MAP))


def _checks(authorized_parties: Sequence[str]) -> tuple[ClaimCheck, ...]:
    parties = frozenset(authorized_parties)

    def pending(claims: Mapping[str, Any]) -> str | None:
        # A pending session has not finished sign-in (e.g. an organization must be chosen).
        return "clerk session pending" if claims.get("sts") == "pending" else None

    def azp(claims: Mapping[str, Any]) -> str | None:
        if not parties:
            return None
        value = claims.get("azp")
        return None if isinstance(value, str) and value in parties else "clerk azp not authorized"

    return (pending, azp)


@verification
def verify_clerk(
    headers: Mapping[str, str], body: bytes, secrets: Sequence[str], *, now: float | None = None
) -> str:
    """Verify a Clerk (Svix) delivery; return its `svix-id`, the de-duplication key."""
    headers = lowered(headers)
    return verify_standard_webhooks(
        headers.get("svix-id"),
        headers.get("svix-timestamp"),
        headers.get("svix-signature"),
        body,
        secrets,
        now=now,
        names=("svix-id", "svix-timestamp", "svix-signature"),
    )


def clerk_user(data: Mapping[str, Any]) -> ProviderUser:
    """A Clerk user object (webhook `data` or a `GET /v1/users` item)."""
    subject = fields.id_at(data, "id")
    primary_id = fields.optional_str(data, "primary_email_address_id")
    addresses = data.get("email_addresses")
    if addresses is None:
        addresses = []
    if not isinstance(addresses, list):
        raise fields.MalformedPayload("email_addresses must be a list")
    email = None
    for entry in addresses:
        if not isinstance(entry, dict):
            raise fields.MalformedPayload("email_addresses entries must be objects")
        # The primary address is named by id; list order means nothing.
        if primary_id is not None and entry.get("id") == primary_id:
            email = fields.email_at(entry, "email_address")
            break
    display_name = fields.display_name(
        fields.optional_str(data, "first_name"),
        fields.optional_str(data, "last_name"),
        fallback=fields.optional_str(data, "username"),
    )
    updated_at = fields.millis(data.get("updated_at"), "updated_at")
    return ProviderUser(subject, email, display_name, updated_at)


def _event_time(envelope: Mapping[str, Any], data: Mapping[str, Any]) -> datetime | None:
    """When Clerk made the change: the envelope's `timestamp` (Unix ms, when the event was created),
    else the object's `updated_at` (Unix ms). A deletion's `data` is only `{object, id, deleted}`,
    so the envelope's time is the one that dates it."""
    for container, key in ((envelope, "timestamp"), (data, "updated_at")):
        value = container.get(key)
        if value is not None:
            return fields.millis(value, key)
    return None


def clerk_role(data: Mapping[str, Any]) -> str | None:
    """A membership's `role` ("org:admin", "org:member", or a custom "org:<key>") without the prefix,
    the spelling v2 session tokens use in `o.rol`."""
    role = fields.optional_str(data, "role")
    if role is None:
        return None
    return fields.id_text(role.removeprefix(ORG_ROLE_PREFIX), "role")


def _membership_event(
    envelope: Mapping[str, Any], data: Mapping[str, Any], event_id: str, event_type: str
) -> MembershipEvent:
    # organizationMembership.*: `data` is the OrganizationMembership object — the organisation
    # nested in `organization` (its `id`), the user in `public_user_data.user_id`, the role in `role`.
    # A deletion sends the membership as it was.
    deleted = event_type == "organizationMembership.deleted"
    organization = fields.object_at(data, "organization")
    user = fields.object_at(data, "public_user_data")
    return MembershipEvent(
        kind="delete" if deleted else "upsert",
        provider=NAME,
        event_id=event_id,
        event_type=event_type,
        org_id=fields.id_at(organization, "id"),
        subject=fields.id_at(user, "user_id"),
        role=None if deleted else clerk_role(data),
        occurred_at=_event_time(envelope, data),
    )


@fields.never_raise_other
def parse_clerk(body: bytes, event_id: str) -> ProviderEvent:
    """Parse a verified Clerk delivery; `event_id` is its `svix-id`."""
    envelope = fields.load_object(body)
    event_type = fields.required_str(envelope, "type")
    data = fields.object_at(envelope, "data")
    if event_type in ORGANIZATION_UPSERT or event_type == "organization.deleted":
        return fields.organization_event(NAME, data, event_id, event_type, _event_time(envelope, data))
    if event_type in MEMBERSHIP_UPSERT or event_type == "organizationMembership.deleted":
        return _membership_event(envelope, data, event_id, event_type)
    if event_type in UPSERT:
        return upsert_event(NAME, event_id, event_type, clerk_user(data))
    if event_type == "user.deleted":
        # `data` is just {object, id, deleted}; the envelope's send time orders it.
        sent = envelope.get("timestamp")
        updated_at = None if sent is None else fields.millis(sent, "timestamp")
        subject = fields.id_at(data, "id")
        return bare_event("delete", NAME, event_id, event_type, subject=subject, updated_at=updated_at)
    if event_type in SESSION_END:
        return bare_event(
            "session_revoked",
            NAME,
            event_id,
            event_type,
            subject=fields.id_at(data, "user_id"),
            session_id=fields.id_at(data, "id"),
        )
    return bare_event("ignored", NAME, event_id, event_type)


class ClerkDirectory:
    """Clerk's Backend API user list (`GET /v1/users`, offset paging)."""

    def __init__(self, settings: ClerkSettings, http: httpx.AsyncClient) -> None:
        self._headers = {"Authorization": f"Bearer {api_key(settings.clerk_secret_key, 'CLERK_SECRET_KEY')}"}
        self._base = f"{settings.clerk_api_url.rstrip('/')}/v1/users"
        self._http = http

    async def pages(self) -> AsyncIterator[list[ProviderUser]]:
        guard = PagingGuard(NAME)
        offset = 0
        while True:
            # Oldest first: users created while we page are appended at the end, not shifted into view twice.
            params: dict[str, str | int] = {"limit": PAGE_SIZE, "offset": offset, "order_by": "created_at"}
            body = await get_json(self._http, NAME, self._base, self._headers, params)
            # The Backend API answers a bare array; accept the SDKs' `{data, total_count}` shape as well.
            items = body.get("data") if isinstance(body, dict) else body
            page = users_from(NAME, items, clerk_user)
            guard.check(page)
            if page:
                yield page
            if len(page) < PAGE_SIZE:
                return
            offset += len(page)

    async def fetch(self, subject: str) -> ProviderUser | None:
        url = f"{self._base}/{quote(subject, safe='')}"
        return await fetch_one(self._http, NAME, url, self._headers, clerk_user)


class Clerk(Provider[ClerkSettings]):
    name = NAME
    has_webhooks = True
    receives_revocations = True

    def check_settings(self, settings: ClerkSettings) -> None:
        if not settings.clerk_issuer:
            raise ValueError("CLERK_ISSUER is required when AUTH_PROVIDERS includes clerk")
        override = settings.clerk_roles_claims or ()
        if any(path in _ORG_CLAIMS or path.startswith("o.") for path in override):
            raise ValueError(
                "CLERK_ROLES_CLAIMS: o.* and org_* are organisation claims any user can hold; "
                "they cannot grant global roles"
            )

    def jwks_url(self, settings: ClerkSettings) -> str | None:
        if settings.clerk_jwt_key or not settings.clerk_issuer:
            return None  # networkless verification with the PEM key
        return settings.clerk_jwks_url or f"{settings.clerk_issuer.rstrip('/')}/.well-known/jwks.json"

    def profile(self, settings: ClerkSettings, keys: KeyContext) -> ProviderProfile:
        assert settings.clerk_issuer is not None  # check_settings refused clerk without it
        url = self.jwks_url(settings)
        source: KeySource = (
            keys.jwks(NAME, url) if url is not None else StaticKeys.from_pem(settings.clerk_jwt_key or "")
        )
        return ProviderProfile(
            name=NAME,
            # The configured URL may carry a trailing slash; Clerk's `iss` never does.
            issuers=(settings.clerk_issuer.rstrip("/"),),
            algorithms=frozenset({"RS256"}),
            keys=source,
            role_paths=tuple(settings.clerk_roles_claims or DEFAULT_ROLES_CLAIMS),
            org_id_paths=("o.id", "org_id"),
            org_role_paths=("o.rol", "org_role"),
            org_permission_paths=("o.per", "org_permissions"),
            org_prefix="org:",
            session_paths=("sid",),
            checks=_checks(settings.clerk_authorized_parties),
        )

    def webhook_secret(self, settings: ClerkSettings) -> str | None:
        return configured(settings.clerk_webhook_secret)

    def read_webhook(self, headers: Mapping[str, str], body: bytes, secret: str) -> ProviderEvent:
        # Several space-separated secrets: old and new side by side while rotating.
        message_id = verify_clerk(headers, body, split_secrets(secret))
        return parse_clerk(body, message_id)

    def user_directory(self, settings: ClerkSettings, http: httpx.AsyncClient) -> ClerkDirectory:
        return ClerkDirectory(settings, http)


PROVIDER = Clerk()
