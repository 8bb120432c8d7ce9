"""Reading a provider's user list over its HTTP API, for `scripts.reconcile_users`.

Each provider module pages through its own API with these helpers. A user record that cannot be
read aborts the run (`ProviderAPIError`) instead of being skipped: reconcile tombstones local users
missing from the list, so silently dropping one would erase a live account.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import httpx
import orjson
from pydantic import SecretStr

from service.providers.events import MalformedPayload, ProviderUser

PAGE_SIZE = 100


class ProviderAPIError(Exception):
    """The provider's API failed or answered something unusable. Never carries the API key."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class UserDirectory(Protocol):
    """A provider's user list: every user, a page at a time, and one user by subject."""

    def pages(self) -> AsyncIterator[list[ProviderUser]]: ...

    async def fetch(self, subject: str) -> ProviderUser | None: ...


def api_key(value: SecretStr | None, variable: str) -> str:
    key = value.get_secret_value().strip() if value is not None else ""
    if not key:
        raise ValueError(f"{variable} is not set; it is needed to read the provider's user list")
    return key


async def get_json(
    http: httpx.AsyncClient,
    provider: str,
    url: str,
    headers: Mapping[str, str],
    params: Mapping[str, str | int] | None = None,
    *,
    allow_404: bool = False,
) -> Any:
    """GET and decode JSON; errors name the provider, path and status, never the headers."""
    path = httpx.URL(url).path
    try:
        response = await http.get(url, params=params, headers=dict(headers))
    except httpx.HTTPError as exc:
        raise ProviderAPIError(f"{provider} API: GET {path} failed ({type(exc).__name__})") from exc
    if allow_404 and response.status_code == 404:
        return None
    if not response.is_success:
        raise ProviderAPIError(
            f"{provider} API: GET {path} answered HTTP {response.status_code}", status=response.status_code
        )
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise ProviderAPIError(f"{provider} API: GET {path} did not answer JSON") from None


def users_from(
    provider: str, items: Any, mapper: Callable[[Mapping[str, Any]], ProviderUser]
) -> list[ProviderUser]:
    if not isinstance(items, list):
        raise ProviderAPIError(f"{provider} API: the user list is not a JSON array")
    users = []
    for item in items:
        if not isinstance(item, dict):
            raise ProviderAPIError(f"{provider} API: a user entry is not an object")
        try:
            users.append(mapper(item))
        except MalformedPayload as exc:
            raise ProviderAPIError(f"{provider} API: a user could not be read ({exc})") from None
    return users


async def fetch_one(
    http: httpx.AsyncClient,
    provider: str,
    url: str,
    headers: Mapping[str, str],
    mapper: Callable[[Mapping[str, Any]], ProviderUser],
) -> ProviderUser | None:
    """One user record, or None when the provider answers 404."""
    body = await get_json(http, provider, url, headers, allow_404=True)
    if body is None:
        return None
    if not isinstance(body, dict):
        raise ProviderAPIError(f"{provider} API: the user is not a JSON object")
    return users_from(provider, [body], mapper)[0]


class PagingGuard:
    """Stops a provider that ignores our paging parameters from looping forever."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.seen: set[str] = set()

    def check(self, page: list[ProviderUser]) -> None:
        subjects = {user.subject for user in page}
        if subjects and subjects <= self.seen:
            raise ProviderAPIError(f"{self.provider} API: paging is not advancing (a page repeated)")
        self.seen |= subjects
