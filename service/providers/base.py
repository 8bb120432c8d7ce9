"""What a provider module provides: one `Provider` per identity provider, found by name in the registry.

A provider knows its own settings (a pydantic-settings fragment that `service.config.Settings`
inherits), how to verify its tokens (`profile`), how to read its signed webhooks into
provider-neutral events, and how to list its users for reconcile. Everything optional has a default
that says "this provider has none".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Generic, TypeVar

import httpx
from pydantic import BeforeValidator, SecretStr
from pydantic_settings import NoDecode

from service.auth.keys import KeySource
from service.auth.profile import ProviderProfile
from service.providers.api import UserDirectory
from service.providers.events import ProviderEvent

# Provider names are open-ended (the registry holds them); this alias is the one spelling.
ProviderName = str


def split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# A comma-separated environment variable read as a list (NoDecode: not parsed as JSON first).
CommaList = Annotated[list[str], NoDecode, BeforeValidator(split_commas)]


WORKSPACE_ROLES = frozenset({"admin", "member", "viewer"})
DEFAULT_ORG_ROLE_MAP = {"admin": "admin", "member": "member"}


def split_role_map(value: Any) -> Any:
    """`admin=admin,member=member` → {provider role: workspace role}; a workspace role must be one of
    admin, member, viewer (a provider role the map does not name becomes viewer)."""
    if not isinstance(value, str):
        return value
    mapping: dict[str, str] = {}
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        provider_role, sep, role = (side.strip() for side in part.partition("="))
        if not sep or not provider_role or role not in WORKSPACE_ROLES:
            raise ValueError(f"expected provider_role=admin|member|viewer, comma-separated; got {part!r}")
        mapping[provider_role] = role
    return mapping


# `<PROVIDER>_ORG_ROLE_MAP`: an organisation role in a token or webhook → a workspace role.
RoleMap = Annotated[dict[str, str], NoDecode, BeforeValidator(split_role_map)]


def configured(secret: SecretStr | None) -> str | None:
    """A secret setting's value, or None when unset or blank."""
    value = secret.get_secret_value().strip() if secret is not None else ""
    return value or None


@dataclass(frozen=True)
class KeyContext:
    """What a profile may need to obtain keys: a JWKS cache for a URL (with the configured timings)."""

    jwks: Callable[[str, str], KeySource]  # (provider name, url) -> key source


S = TypeVar("S")


class Provider(Generic[S]):
    """One identity provider. `S` is its settings fragment; the composed Settings is an `S`."""

    name: ClassVar[ProviderName]
    # True when the provider sends session revocations (webhooks), so a token naming a session can
    # be refused once its session is revoked — and must not outlive the revocation's retention.
    receives_revocations: ClassVar[bool] = False
    # True when `read_webhook` is implemented: POST /api/v1/webhooks/{name} then receives its events.
    has_webhooks: ClassVar[bool] = False

    def check_settings(self, settings: S) -> None:
        """Raise ValueError naming the variable when an enabled provider is misconfigured."""

    def jwks_url(self, settings: S) -> str | None:
        """The key set to fetch, or None when keys are configured locally."""
        return None

    def profile(self, settings: S, keys: KeyContext) -> ProviderProfile:
        raise NotImplementedError

    def webhook_secret(self, settings: S) -> str | None:
        """The receiver's signing secret, or None when the provider has no (configured) receiver."""
        return None

    def read_webhook(self, headers: Mapping[str, str], body: bytes, secret: str) -> ProviderEvent:
        """Verify the raw body (SignatureInvalid → 401) and parse it (MalformedPayload → 400)."""
        raise NotImplementedError(f"{self.name} has no webhook receiver")

    def user_directory(self, settings: S, http: httpx.AsyncClient) -> UserDirectory:
        """The provider's user-list API (reconcile); ValueError naming the variable when unusable."""
        raise ValueError(f"{self.name} has no user-list API to reconcile from")
