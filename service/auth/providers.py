"""One profile per identity provider: who issues, with which algorithms and keys, and how
its claims map to Routebook's roles, permissions, organization and session (contract §4)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from service.auth.jwks import JWKSCache, KeySource, StaticKeys
from service.config import Settings

# A check returns the reason a verified token is still refused, or None.
ClaimCheck = Callable[[Mapping[str, Any]], str | None]

_MISSING = object()


@dataclass(frozen=True, slots=True)
class ProviderProfile:
    """Everything verification needs to know about one provider; nothing comes from the token."""

    name: str
    issuers: tuple[str, ...]
    algorithms: frozenset[str]
    keys: KeySource
    audience: str | None = None
    role_paths: tuple[str, ...] = ()
    permission_paths: tuple[str, ...] = ()
    org_paths: tuple[str, ...] = ()
    session_paths: tuple[str, ...] = ()
    email_paths: tuple[str, ...] = ("email",)
    checks: tuple[ClaimCheck, ...] = ()
    role_prefix: str | None = None
    # Only Supabase's legacy shared secret; kept out of repr so it never reaches a log.
    hmac_secret: bytes | None = field(default=None, repr=False)

    def refusal(self, claims: Mapping[str, Any]) -> str | None:
        for check in self.checks:
            reason = check(claims)
            if reason is not None:
                return reason
        return None

    def roles(self, claims: Mapping[str, Any]) -> tuple[str, ...]:
        values = strings_at(claims, self.role_paths)
        if self.role_prefix:
            # Clerk v1 writes "org:admin" where v2 writes "admin": one name for one role.
            prefix = self.role_prefix
            values = tuple(dict.fromkeys(r for v in values if (r := v.removeprefix(prefix))))
        return values

    def permissions(self, claims: Mapping[str, Any]) -> tuple[str, ...]:
        return strings_at(claims, self.permission_paths)

    def org_id(self, claims: Mapping[str, Any]) -> str | None:
        return first_string(claims, self.org_paths)

    def session_id(self, claims: Mapping[str, Any]) -> str | None:
        return first_string(claims, self.session_paths)

    def email(self, claims: Mapping[str, Any]) -> str | None:
        return first_string(claims, self.email_paths)


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path; a literal key containing dots (namespaced claims) wins."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def strings_at(claims: Mapping[str, Any], paths: Iterable[str]) -> tuple[str, ...]:
    """Strings found at the paths, in order, without duplicates.

    A value may be a string, a comma-joined string (Clerk's `o.per`) or a list of strings;
    anything else is ignored rather than trusted.
    """
    found: list[str] = []
    for path in paths:
        value = claim_at(claims, path)
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, str):
                found.extend(part.strip() for part in item.split(","))
    return tuple(dict.fromkeys(v for v in found if v))


def first_string(claims: Mapping[str, Any], paths: Iterable[str]) -> str | None:
    for path in paths:
        value = claim_at(claims, path)
        if isinstance(value, str) and value:
            return value
    return None


def _clerk_checks(authorized_parties: Sequence[str]) -> tuple[ClaimCheck, ...]:
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


_SUPABASE_NON_USER_ROLES = frozenset({"anon", "service_role", "supabase_admin"})


def _supabase_checks(allow_anonymous: bool) -> tuple[ClaimCheck, ...]:
    def api_key(claims: Mapping[str, Any]) -> str | None:
        # The project's anon/service-role API keys are JWTs too; they are never a user.
        role = claims.get("role")
        if role is not None and not isinstance(role, str):
            # Supabase always writes a string: a role we cannot read cannot prove a user.
            return "supabase role not a string"
        if role in _SUPABASE_NON_USER_ROLES:
            return "supabase API key, not a user token"
        return None

    def anonymous(claims: Mapping[str, Any]) -> str | None:
        if claims.get("is_anonymous") is True and not allow_anonymous:
            return "supabase anonymous user"
        return None

    return (api_key, anonymous)


def _role_paths(override: Sequence[str] | None, default: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(override) if override else default


def _clerk(settings: Settings, keys: KeySource) -> ProviderProfile:
    assert settings.clerk_issuer is not None  # Settings refuses clerk without CLERK_ISSUER
    return ProviderProfile(
        name="clerk",
        # The configured URL may carry a trailing slash; Clerk's `iss` never does.
        issuers=(settings.clerk_issuer.rstrip("/"),),
        algorithms=frozenset({"RS256"}),
        keys=keys,
        role_paths=_role_paths(
            settings.clerk_roles_claims, ("o.rol", "org_role", "metadata.role", "metadata.roles")
        ),
        permission_paths=("o.per", "org_permissions"),
        org_paths=("o.id", "org_id"),
        session_paths=("sid",),
        checks=_clerk_checks(settings.clerk_authorized_parties),
        role_prefix="org:",
    )


def _supabase(settings: Settings, keys: KeySource) -> ProviderProfile:
    override = settings.supabase_roles_claims
    if override and any(p == "user_metadata" or p.startswith("user_metadata.") for p in override):
        raise ValueError("SUPABASE_ROLES_CLAIMS: user_metadata is user-editable and cannot grant roles")
    secret = settings.supabase_jwt_secret.get_secret_value() if settings.supabase_jwt_secret else None
    algorithms = {"ES256", "RS256"} | ({"HS256"} if secret else set())
    return ProviderProfile(
        name="supabase",
        issuers=(settings.supabase_issuer,),
        algorithms=frozenset(algorithms),
        keys=keys,
        audience=settings.supabase_audience,
        role_paths=_role_paths(override, ("app_metadata.role", "app_metadata.roles", "user_role")),
        permission_paths=("app_metadata.permissions",),
        session_paths=("session_id",),
        checks=_supabase_checks(settings.supabase_allow_anonymous),
        hmac_secret=secret.encode() if secret else None,
    )


def _workos(settings: Settings, keys: KeySource) -> ProviderProfile:
    return ProviderProfile(
        name="workos",
        issuers=tuple(settings.workos_issuers),
        algorithms=frozenset({"RS256"}),
        keys=keys,
        role_paths=_role_paths(settings.workos_roles_claims, ("role", "roles")),
        permission_paths=("permissions",),
        org_paths=("org_id",),
        session_paths=("sid",),
    )


def _dev(settings: Settings, keys: KeySource) -> ProviderProfile:
    return ProviderProfile(
        name="dev",
        issuers=(settings.dev_issuer,),
        algorithms=frozenset({"RS256"}),
        keys=keys,
        role_paths=_role_paths(settings.dev_roles_claims, ("roles",)),
        permission_paths=("permissions",),
        org_paths=("org_id",),
        session_paths=("sid",),
    )


def _jwks(settings: Settings, name: str, url: str, http: httpx.AsyncClient) -> JWKSCache:
    return JWKSCache(
        name,
        url,
        http=http,
        max_age=settings.jwks_cache_max_age,
        cooldown=settings.jwks_refresh_cooldown,
        max_stale=settings.jwks_max_stale,
        timeout=settings.jwks_http_timeout,
    )


def build_profiles(
    settings: Settings, http: httpx.AsyncClient, dev_keys: StaticKeys | None
) -> list[ProviderProfile]:
    """The profiles of `AUTH_PROVIDERS`, in order; raises ValueError on an unusable setup."""
    urls = settings.jwks_urls()
    profiles: list[ProviderProfile] = []
    for name in settings.auth_providers:
        if name == "clerk":
            keys: KeySource = (
                StaticKeys.from_pem(settings.clerk_jwt_key)
                if settings.clerk_jwt_key
                else _jwks(settings, name, urls[name], http)
            )
            profiles.append(_clerk(settings, keys))
        elif name == "supabase":
            profiles.append(_supabase(settings, _jwks(settings, name, urls[name], http)))
        elif name == "workos":
            profiles.append(_workos(settings, _jwks(settings, name, urls[name], http)))
        elif name == "dev":
            if dev_keys is None:
                raise ValueError("AUTH_PROVIDERS includes dev but no dev issuer keys were given")
            profiles.append(_dev(settings, dev_keys))
    _refuse_shared_issuers(profiles)
    return profiles


def _refuse_shared_issuers(profiles: Sequence[ProviderProfile]) -> None:
    # Routing is by exact `iss`; two providers claiming one issuer would make it ambiguous.
    owners: dict[str, str] = {}
    for profile in profiles:
        for issuer in profile.issuers:
            if issuer in owners:
                both = f"{owners[issuer]} and {profile.name}"
                raise ValueError(f"issuer {issuer!r} is configured for both {both}")
            owners[issuer] = profile.name
