"""WorkOS AuthKit: access tokens (RS256), `WorkOS-Signature` webhooks, the User Management API.

WorkOS sends session revocations (`session.revoked`), so its tokens are checked against them, as
Clerk's are.

WorkOS puts the organisation membership's role and permissions in its tokens: they are the
organisation context, never global roles — unless `WORKOS_ROLES_CLAIMS` names a claim explicitly.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from service.auth.profile import ProviderProfile
from service.providers import fields
from service.providers.api import (
    PAGE_SIZE,
    PagingGuard,
    ProviderAPIError,
    api_key,
    fetch_one,
    get_json,
    users_from,
)
from service.providers.base import DEFAULT_ORG_ROLE_MAP, CommaList, KeyContext, Provider, RoleMap, configured
from service.providers.events import (
    MembershipEvent,
    ProviderEvent,
    ProviderUser,
    bare_event,
    upsert_event,
)
from service.providers.webhook_auth import SignatureInvalid, verification

NAME = "workos"
UPSERT = frozenset({"user.created", "user.updated"})
ORGANIZATION = frozenset({"organization.created", "organization.updated", "organization.deleted"})
MEMBERSHIP = frozenset(
    {"organization_membership.created", "organization_membership.updated", "organization_membership.deleted"}
)
# Only an `active` membership admits; `pending` (invited, not yet accepted) and `inactive`
# (deactivated) do not.
ACTIVE = "active"
TOLERANCE_S = 180
_MILLIS = re.compile(r"[0-9]{1,15}")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class WorkOSSettings(BaseSettings):
    workos_client_id: str | None = None
    workos_issuer: CommaList | None = None
    workos_jwks_url: str | None = None
    workos_webhook_secret: SecretStr | None = None
    workos_api_key: SecretStr | None = None
    workos_api_url: str = "https://api.workos.com"
    # No default: WorkOS's `role`/`roles` are the organisation membership's, not global roles.
    workos_roles_claims: CommaList | None = None
    workos_org_role_map: RoleMap = Field(default_factory=lambda: dict(DEFAULT_ORG_ROLE_MAP))

    @property
    def workos_issuers(self) -> list[str]:
        if self.workos_issuer:
            return self.workos_issuer
        return [f"https://api.workos.com/user_management/{self.workos_client_id}"]


@verification
def verify_workos(
    header: str | None,
    body: bytes,
    secret: str,
    *,
    now_ms: int | None = None,
    tolerance_s: int = TOLERANCE_S,
) -> None:
    """Verify `WorkOS-Signature: t=<unix ms>, v1=<hex>` over `"{t}.{raw body}"`."""
    if not header:
        raise SignatureInvalid("missing WorkOS-Signature")
    if not secret:
        raise SignatureInvalid("no webhook secret configured")
    parts: dict[str, str] = {}
    for raw in header.split(","):
        key, sep, value = raw.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise SignatureInvalid("WorkOS-Signature has a part that is not key=value")
        if key in parts:
            raise SignatureInvalid(f"WorkOS-Signature repeats {key}=")
        parts[key] = value
    issued, signature = parts.get("t"), parts.get("v1")
    if issued is None or signature is None:
        raise SignatureInvalid("WorkOS-Signature needs both t= and v1=")
    if not _MILLIS.fullmatch(issued):
        raise SignatureInvalid("WorkOS-Signature t= is not Unix milliseconds")
    if not _HEX_SHA256.fullmatch(signature):
        raise SignatureInvalid("WorkOS-Signature v1= is not a hex SHA-256")
    # int() refuses NaN/inf (→ SignatureInvalid), which would otherwise pass every comparison.
    current_ms = time.time_ns() // 1_000_000 if now_ms is None else int(now_ms)
    if abs(current_ms - int(issued)) > tolerance_s * 1000:
        raise SignatureInvalid("WorkOS-Signature timestamp outside tolerance")
    # The key is the secret's UTF-8 bytes (not base64), and the signed `t` is the header's own digits.
    expected = hmac.new(
        secret.encode("utf-8"), issued.encode("ascii") + b"." + body, hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected.encode("ascii"), signature.lower().encode("ascii")):
        raise SignatureInvalid("no matching signature")


def workos_user(data: Mapping[str, Any]) -> ProviderUser:
    """A WorkOS user object (webhook `data` or a `GET /user_management/users` item)."""
    subject = fields.id_at(data, "id")
    display_name = fields.display_name(
        fields.optional_str(data, "first_name"), fields.optional_str(data, "last_name")
    )
    updated_at = fields.timestamp(data.get("updated_at"), "updated_at")
    return ProviderUser(subject, fields.email_at(data, "email"), display_name, updated_at)


def _event_time(envelope: Mapping[str, Any], data: Mapping[str, Any]) -> datetime | None:
    """When WorkOS made the change: the event's own `created_at` (ISO 8601), else the object's
    `updated_at`. WorkOS does not deliver in order; this is what the order guard compares."""
    occurred = fields.optional_timestamp(envelope, "created_at")
    return occurred if occurred is not None else fields.optional_timestamp(data, "updated_at")


def workos_role(data: Mapping[str, Any]) -> str | None:
    """A membership's role slug: `role.slug`, else the first of `roles[].slug` (multiple roles)."""
    role = data.get("role")
    if role is None:
        roles = data.get("roles")
        if roles is None or roles == []:
            return None
        if not isinstance(roles, list):
            raise fields.MalformedPayload("roles must be a list")
        role = roles[0]
    if not isinstance(role, dict):
        raise fields.MalformedPayload("role must be an object")
    return fields.id_at(role, "slug")


def _membership_event(
    envelope: Mapping[str, Any], data: Mapping[str, Any], event_id: str, event_type: str
) -> MembershipEvent:
    # organization_membership.*: `data` is the OrganizationMembership object — `organization_id`,
    # `user_id`, `role: {slug}`, `status` (active | inactive | pending).
    status = fields.optional_str(data, "status")
    removed = event_type == "organization_membership.deleted" or (status is not None and status != ACTIVE)
    return MembershipEvent(
        kind="delete" if removed else "upsert",
        provider=NAME,
        event_id=event_id,
        event_type=event_type,
        org_id=fields.id_at(data, "organization_id"),
        subject=fields.id_at(data, "user_id"),
        role=None if removed else workos_role(data),
        occurred_at=_event_time(envelope, data),
    )


@fields.never_raise_other
def parse_workos(body: bytes) -> ProviderEvent:
    """Parse a verified WorkOS delivery; the event `id` is the de-duplication key."""
    envelope = fields.load_object(body)
    event_id = fields.id_at(envelope, "id")
    event_type = fields.required_str(envelope, "event")
    data = fields.object_at(envelope, "data")
    if event_type in ORGANIZATION:
        return fields.organization_event(NAME, data, event_id, event_type, _event_time(envelope, data))
    if event_type in MEMBERSHIP:
        return _membership_event(envelope, data, event_id, event_type)
    if event_type == "session.revoked":
        # `data` is the Session object: `id` ("session_…", the access token's `sid`), `user_id`.
        return bare_event(
            "session_revoked",
            NAME,
            event_id,
            event_type,
            subject=fields.id_at(data, "user_id"),
            session_id=fields.id_at(data, "id"),
        )
    if event_type in UPSERT:
        return upsert_event(NAME, event_id, event_type, workos_user(data))
    if event_type == "user.deleted":
        return bare_event(
            "delete",
            NAME,
            event_id,
            event_type,
            subject=fields.id_at(data, "id"),
            updated_at=fields.optional_timestamp(data, "updated_at"),
        )
    return bare_event("ignored", NAME, event_id, event_type)


class WorkOSDirectory:
    """WorkOS User Management's user list (`GET /user_management/users`, cursor paging)."""

    def __init__(self, settings: WorkOSSettings, http: httpx.AsyncClient) -> None:
        self._headers = {"Authorization": f"Bearer {api_key(settings.workos_api_key, 'WORKOS_API_KEY')}"}
        self._base = f"{settings.workos_api_url.rstrip('/')}/user_management/users"
        self._http = http

    async def pages(self) -> AsyncIterator[list[ProviderUser]]:
        guard = PagingGuard(NAME)
        after: str | None = None
        while True:
            # Ascending, so a user created mid-run lands ahead of the cursor rather than behind it.
            params: dict[str, str | int] = {"limit": PAGE_SIZE, "order": "asc"}
            if after is not None:
                params["after"] = after
            body = await get_json(self._http, NAME, self._base, self._headers, params)
            if not isinstance(body, dict):
                raise ProviderAPIError("workos API: the user list is not a JSON object")
            page = users_from(NAME, body.get("data"), workos_user)
            guard.check(page)
            if page:
                yield page
            metadata = body.get("list_metadata")
            cursor = metadata.get("after") if isinstance(metadata, dict) else None
            if cursor is None:
                return
            if not isinstance(cursor, str) or not cursor or cursor == after:
                raise ProviderAPIError("workos API: list_metadata.after is not a new cursor")
            after = cursor

    async def fetch(self, subject: str) -> ProviderUser | None:
        url = f"{self._base}/{quote(subject, safe='')}"
        return await fetch_one(self._http, NAME, url, self._headers, workos_user)


class WorkOS(Provider[WorkOSSettings]):
    name = NAME
    has_webhooks = True
    # WorkOS sends `session.revoked`: its tokens are checked against revocations, and so are capped
    # at the lifetime a revocation is kept.
    receives_revocations = True

    def check_settings(self, settings: WorkOSSettings) -> None:
        if not settings.workos_client_id:
            raise ValueError("WORKOS_CLIENT_ID is required when AUTH_PROVIDERS includes workos")

    def jwks_url(self, settings: WorkOSSettings) -> str | None:
        return settings.workos_jwks_url or f"https://api.workos.com/sso/jwks/{settings.workos_client_id}"

    def profile(self, settings: WorkOSSettings, keys: KeyContext) -> ProviderProfile:
        url = self.jwks_url(settings)
        assert url is not None
        return ProviderProfile(
            name=NAME,
            issuers=tuple(settings.workos_issuers),
            algorithms=frozenset({"RS256"}),
            keys=keys.jwks(NAME, url),
            role_paths=tuple(settings.workos_roles_claims or ()),
            org_id_paths=("org_id",),
            org_role_paths=("role", "roles"),
            org_permission_paths=("permissions",),
            session_paths=("sid",),
        )

    def webhook_secret(self, settings: WorkOSSettings) -> str | None:
        return configured(settings.workos_webhook_secret)

    def read_webhook(self, headers: Mapping[str, str], body: bytes, secret: str) -> ProviderEvent:
        verify_workos(headers.get("workos-signature"), body, secret)
        return parse_workos(body)

    def user_directory(self, settings: WorkOSSettings, http: httpx.AsyncClient) -> WorkOSDirectory:
        return WorkOSDirectory(settings, http)


PROVIDER = WorkOS()
