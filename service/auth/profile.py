"""What verification knows about one provider (`ProviderProfile`) and how claims are read from a token.

Profiles are built by the provider modules (`service.providers.*`); nothing here names a provider.
A profile says which issuer, algorithms and keys to trust, where the *global* roles live (claims an
end user cannot set) and where the *organisation* context lives — kept apart, because anyone can
create an organisation and be its admin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from service.auth.keys import KeySource

# A check returns the reason a verified token is still refused, or None.
ClaimCheck = Callable[[Mapping[str, Any]], str | None]

_MISSING = object()


@dataclass(frozen=True, slots=True)
class OrgContext:
    """The organisation a token is acting in. Never a source of global privilege."""

    id: str | None
    role: str | None
    permissions: tuple[str, ...]


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
    org_id_paths: tuple[str, ...] = ()
    org_role_paths: tuple[str, ...] = ()
    org_permission_paths: tuple[str, ...] = ()
    # Clerk v1 writes "org:admin" where v2 writes "admin": one name for one role.
    org_prefix: str | None = None
    session_paths: tuple[str, ...] = ()
    email_paths: tuple[str, ...] = ("email",)
    checks: tuple[ClaimCheck, ...] = ()
    # Only Supabase's legacy shared secret; kept out of repr so it never reaches a log.
    hmac_secret: bytes | None = field(default=None, repr=False)

    def refusal(self, claims: Mapping[str, Any]) -> str | None:
        for check in self.checks:
            reason = check(claims)
            if reason is not None:
                return reason
        return None

    def roles(self, claims: Mapping[str, Any]) -> tuple[str, ...]:
        return strings_at(claims, self.role_paths)

    def permissions(self, claims: Mapping[str, Any]) -> tuple[str, ...]:
        return strings_at(claims, self.permission_paths)

    def org(self, claims: Mapping[str, Any]) -> OrgContext | None:
        org_id = first_string(claims, self.org_id_paths)
        roles = self._unprefixed(strings_at(claims, self.org_role_paths))
        role = roles[0] if roles else None
        permissions = self._unprefixed(strings_at(claims, self.org_permission_paths))
        if org_id is None and role is None and not permissions:
            return None
        return OrgContext(id=org_id, role=role, permissions=permissions)

    def session_id(self, claims: Mapping[str, Any]) -> str | None:
        return first_string(claims, self.session_paths)

    def email(self, claims: Mapping[str, Any]) -> str | None:
        return first_string(claims, self.email_paths)

    def _unprefixed(self, values: tuple[str, ...]) -> tuple[str, ...]:
        if not self.org_prefix:
            return values
        prefix = self.org_prefix
        return tuple(dict.fromkeys(name for value in values if (name := value.removeprefix(prefix))))


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
