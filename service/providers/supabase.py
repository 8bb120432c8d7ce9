"""Supabase Auth: access tokens (ES256/RS256, or the legacy HS256 secret), Database Webhooks on
`auth.users` (Standard Webhooks signature or a bearer secret), and the admin users API.

Global roles come from `app_metadata` (server-set) and a custom access-token hook's `user_role`;
`user_metadata` is user-editable and never grants anything. Supabase sends no session revocations.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from service.auth.profile import ClaimCheck, ProviderProfile
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
from service.providers.base import CommaList, KeyContext, Provider, configured
from service.providers.events import MalformedPayload, ProviderUser, UserEvent, bare_event, upsert_event
from service.providers.webhook_auth import SignatureInvalid, lowered, verification, verify_standard_webhooks

NAME = "supabase"
DEFAULT_ROLES_CLAIMS = ("app_metadata.role", "app_metadata.roles", "user_role")
_NON_USER_ROLES = frozenset({"anon", "service_role", "supabase_admin"})


class SupabaseSettings(BaseSettings):
    supabase_url: str | None = None
    supabase_jwks_url: str | None = None
    supabase_jwt_secret: SecretStr | None = None
    supabase_audience: str = "authenticated"
    supabase_allow_anonymous: bool = False
    supabase_webhook_secret: SecretStr | None = None
    supabase_service_role_key: SecretStr | None = None
    supabase_roles_claims: CommaList | None = None

    @property
    def supabase_base(self) -> str:
        return (self.supabase_url or "").rstrip("/")

    @property
    def supabase_issuer(self) -> str:
        return f"{self.supabase_base}/auth/v1"


def _checks(allow_anonymous: bool) -> tuple[ClaimCheck, ...]:
    def api_key_token(claims: Mapping[str, Any]) -> str | None:
        # The project's anon/service-role API keys are JWTs too; they are never a user.
        role = claims.get("role")
        if role is not None and not isinstance(role, str):
            # Supabase always writes a string: a role we cannot read cannot prove a user.
            return "supabase role not a string"
        if role in _NON_USER_ROLES:
            return "supabase API key, not a user token"
        return None

    def anonymous(claims: Mapping[str, Any]) -> str | None:
        if claims.get("is_anonymous") is True and not allow_anonymous:
            return "supabase anonymous user"
        return None

    return (api_key_token, anonymous)


def is_standard_webhooks_secret(secret: str) -> bool:
    """True for `whsec_…` or Supabase's dashboard form `v1,whsec_…`."""
    return secret.startswith(("whsec_", "v1,whsec_"))


@verification
def verify_supabase(
    headers: Mapping[str, str], body: bytes, secret: str, *, now: float | None = None
) -> str | None:
    """Verify Supabase: Standard Webhooks for a whsec secret (→ webhook-id), else a bearer secret (→ None)."""
    if not secret:
        raise SignatureInvalid("no webhook secret configured")
    headers = lowered(headers)
    if is_standard_webhooks_secret(secret):
        return verify_standard_webhooks(
            headers.get("webhook-id"),
            headers.get("webhook-timestamp"),
            headers.get("webhook-signature"),
            body,
            [secret],
            now=now,
        )
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise SignatureInvalid("missing bearer secret")
    # surrogatepass: any str a server hands us encodes, so a hostile header cannot raise here.
    given = token.strip().encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(given, secret.encode("utf-8", "surrogatepass")):
        raise SignatureInvalid("wrong bearer secret")
    return None


def supabase_user(record: Mapping[str, Any], metadata_key: str = "raw_user_meta_data") -> ProviderUser:
    """A Supabase user: an `auth.users` row (`raw_user_meta_data`) or an admin API user (`user_metadata`).

    Rows carry sensitive columns (password hash, tokens, phone); only id, email, a name,
    updated_at and deleted_at are read, so nothing else can reach storage by accident.
    """
    subject = fields.id_at(record, "id")
    metadata = record.get(metadata_key)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise MalformedPayload(f"{metadata_key} must be an object")
    display_name = fields.display_name(
        fields.free_text_at(metadata, "full_name"), fallback=fields.free_text_at(metadata, "name")
    )
    updated_at = fields.optional_timestamp(record, "updated_at")
    # Supabase Auth soft-deletes by setting deleted_at; the user stays listed, but is gone for us.
    deleted = fields.optional_str(record, "deleted_at") is not None
    return ProviderUser(subject, fields.email_at(record, "email"), display_name, updated_at, deleted)


def _api_user(item: Mapping[str, Any]) -> ProviderUser:
    # The admin API names the metadata `user_metadata`; the auth.users row calls it `raw_user_meta_data`.
    return supabase_user(item, metadata_key="user_metadata")


@fields.never_raise_other
def parse_supabase(body: bytes) -> UserEvent:
    """Parse a verified Supabase Database Webhook on `auth.users`; it has no stable event id."""
    envelope = fields.load_object(body)
    event_type = fields.required_str(envelope, "type")
    table = fields.required_str(envelope, "table")
    schema = fields.required_str(envelope, "schema")
    if (schema, table) != ("auth", "users"):
        return bare_event("ignored", NAME, None, event_type)
    if event_type in ("INSERT", "UPDATE"):
        user = supabase_user(fields.object_at(envelope, "record"))
        if user.deleted:
            return bare_event(
                "delete", NAME, None, event_type, subject=user.subject, updated_at=user.updated_at
            )
        return upsert_event(NAME, None, event_type, user)
    if event_type == "DELETE":
        old = fields.object_at(envelope, "old_record")
        return bare_event("delete", NAME, None, event_type, subject=fields.id_at(old, "id"))
    return bare_event("ignored", NAME, None, event_type)


class SupabaseDirectory:
    """GoTrue's admin user list (`GET /auth/v1/admin/users`, page numbers)."""

    def __init__(self, settings: SupabaseSettings, http: httpx.AsyncClient) -> None:
        key = api_key(settings.supabase_service_role_key, "SUPABASE_SERVICE_ROLE_KEY")
        if not settings.supabase_base:
            raise ValueError("SUPABASE_URL is not set; it is needed to read the provider's user list")
        self._headers = {"apikey": key, "Authorization": f"Bearer {key}"}
        self._base = f"{settings.supabase_base}/auth/v1/admin/users"
        self._http = http

    async def pages(self) -> AsyncIterator[list[ProviderUser]]:
        guard = PagingGuard(NAME)
        page_number = 1
        while True:
            # GoTrue also sends `x-total-count` and a `Link` header; a short page is the simplest end signal.
            params: dict[str, str | int] = {"page": page_number, "per_page": PAGE_SIZE}
            body = await get_json(self._http, NAME, self._base, self._headers, params)
            if not isinstance(body, dict):
                raise ProviderAPIError("supabase API: the user list is not a JSON object")
            page = users_from(NAME, body.get("users"), _api_user)
            guard.check(page)
            if page:
                yield page
            if len(page) < PAGE_SIZE:
                return
            page_number += 1

    async def fetch(self, subject: str) -> ProviderUser | None:
        url = f"{self._base}/{quote(subject, safe='')}"
        return await fetch_one(self._http, NAME, url, self._headers, _api_user)


class Supabase(Provider[SupabaseSettings]):
    name = NAME
    has_webhooks = True

    def check_settings(self, settings: SupabaseSettings) -> None:
        if not settings.supabase_url:
            raise ValueError("SUPABASE_URL is required when AUTH_PROVIDERS includes supabase")
        override = settings.supabase_roles_claims or ()
        if any(path == "user_metadata" or path.startswith("user_metadata.") for path in override):
            raise ValueError("SUPABASE_ROLES_CLAIMS: user_metadata is user-editable and cannot grant roles")

    def jwks_url(self, settings: SupabaseSettings) -> str | None:
        return settings.supabase_jwks_url or f"{settings.supabase_base}/auth/v1/.well-known/jwks.json"

    def profile(self, settings: SupabaseSettings, keys: KeyContext) -> ProviderProfile:
        secret = configured(settings.supabase_jwt_secret)
        url = self.jwks_url(settings)
        assert url is not None
        return ProviderProfile(
            name=NAME,
            issuers=(settings.supabase_issuer,),
            # HS256 only with the project's legacy secret, and only for Supabase.
            algorithms=frozenset({"ES256", "RS256"} | ({"HS256"} if secret else set())),
            keys=keys.jwks(NAME, url),
            audience=settings.supabase_audience,
            role_paths=tuple(settings.supabase_roles_claims or DEFAULT_ROLES_CLAIMS),
            permission_paths=("app_metadata.permissions",),
            session_paths=("session_id",),
            checks=_checks(settings.supabase_allow_anonymous),
            hmac_secret=secret.encode() if secret else None,
        )

    def webhook_secret(self, settings: SupabaseSettings) -> str | None:
        return configured(settings.supabase_webhook_secret)

    def read_webhook(self, headers: Mapping[str, str], body: bytes, secret: str) -> UserEvent:
        # The webhook-id (whsec mode) is new on every retry, so it is no de-duplication key.
        verify_supabase(headers, body, secret)
        return parse_supabase(body)

    def user_directory(self, settings: SupabaseSettings, http: httpx.AsyncClient) -> SupabaseDirectory:
        return SupabaseDirectory(settings, http)


PROVIDER = Supabase()
