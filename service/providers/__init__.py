"""The identity providers Routebook knows, one module each, found by name in one registry.

Adding a provider: write a module with a `Provider` subclass (its settings fragment, token profile,
and — if it has them — webhook reader and user-list API), then `register()` it, and add its settings
fragment to `service.config.Settings` if it reads environment variables.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx

from service.auth.jwks import JWKSCache
from service.auth.keys import KeySource
from service.auth.profile import ProviderProfile
from service.auth.tokens import TokenVerifier
from service.providers import clerk, dev, supabase, workos
from service.providers.base import KeyContext, Provider, ProviderName
from service.providers.events import ProviderUser

_REGISTRY: dict[ProviderName, Provider[Any]] = {}


def register(provider: Provider[Any]) -> None:
    """Make `provider` selectable in AUTH_PROVIDERS (a name may be registered once)."""
    if provider.name in _REGISTRY and _REGISTRY[provider.name] is not provider:
        raise ValueError(f"a provider named {provider.name!r} is already registered")
    _REGISTRY[provider.name] = provider


def unregister(name: ProviderName) -> None:
    _REGISTRY.pop(name, None)


def names() -> tuple[ProviderName, ...]:
    return tuple(_REGISTRY)


def get(name: ProviderName) -> Provider[Any]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown provider {name!r}; known: {', '.join(_REGISTRY)}") from None


def enabled(names_in_order: Iterable[ProviderName]) -> list[Provider[Any]]:
    return [get(name) for name in names_in_order]


def build_profiles(settings: Any, keys: KeyContext) -> list[ProviderProfile]:
    """The token profiles of `settings.auth_providers`, in order; ValueError on an unusable setup."""
    profiles = [provider.profile(settings, keys) for provider in enabled(settings.auth_providers)]
    _refuse_shared_issuers(profiles)
    return profiles


def _refuse_shared_issuers(profiles: list[ProviderProfile]) -> None:
    # Routing is by exact `iss`; two providers claiming one issuer would make it ambiguous.
    owners: dict[str, str] = {}
    for profile in profiles:
        for issuer in profile.issuers:
            if issuer in owners:
                raise ValueError(
                    f"issuer {issuer!r} is configured for both {owners[issuer]} and {profile.name}"
                )
            owners[issuer] = profile.name


def build_verifier(settings: Any, http: httpx.AsyncClient) -> TokenVerifier:
    """The token verifier of `settings.auth_providers`, fetching JWKS with `http`."""

    def jwks(name: str, url: str) -> KeySource:
        return JWKSCache(
            name,
            url,
            http=http,
            max_age=settings.jwks_cache_max_age,
            cooldown=settings.jwks_refresh_cooldown,
            max_stale=settings.jwks_max_stale,
            timeout=settings.jwks_http_timeout,
        )

    return TokenVerifier(build_profiles(settings, KeyContext(jwks=jwks)), leeway=settings.jwt_leeway_seconds)


def revocable(settings: Any) -> frozenset[ProviderName]:
    """The enabled providers whose session revocations reach us."""
    return frozenset(p.name for p in enabled(settings.auth_providers) if p.receives_revocations)


async def iter_users(
    name: ProviderName, settings: Any, http: httpx.AsyncClient
) -> AsyncIterator[list[ProviderUser]]:
    """The provider's users, one page at a time (no empty pages); ValueError before any request
    when its API key is missing, ProviderAPIError when the API fails or answers nonsense."""
    async for page in get(name).user_directory(settings, http).pages():
        yield page


async def fetch_user(
    name: ProviderName, subject: str, settings: Any, http: httpx.AsyncClient
) -> ProviderUser | None:
    """One user by subject, or None when the provider answers 404."""
    return await get(name).user_directory(settings, http).fetch(subject)


for _provider in (clerk.PROVIDER, supabase.PROVIDER, workos.PROVIDER, dev.PROVIDER):
    register(_provider)

__all__ = [
    "KeyContext",
    "KeySource",
    "Provider",
    "ProviderName",
    "build_profiles",
    "build_verifier",
    "enabled",
    "fetch_user",
    "get",
    "iter_users",
    "names",
    "register",
    "revocable",
    "unregister",
]
