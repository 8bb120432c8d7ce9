"""Read a provider's full user list, page by page, for `scripts.reconcile_users`.

Users are mapped with the same functions the webhook parsers use. A user record that cannot be
read aborts the run (`ProviderAPIError`) instead of being skipped: reconcile tombstones local
users missing from the list, so silently dropping one would erase a live account.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal
from urllib.parse import quote

import httpx
import orjson
from pydantic import SecretStr

from service.config import Settings
from service.webhooks.payloads import MalformedPayload, ProviderUser, clerk_user, supabase_user, workos_user

__all__ = ["PAGE_SIZE", "ProviderAPIError", "ProviderUser", "fetch_user", "iter_users"]

PAGE_SIZE = 100
ProviderKind = Literal["clerk", "workos", "supabase"]


class ProviderAPIError(Exception):
    """The provider's API failed or answered something unusable. Never carries the API key."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


def _api_key(value: SecretStr | None, variable: str) -> str:
    key = value.get_secret_value().strip() if value is not None else ""
    if not key:
        raise ValueError(f"{variable} is not set; it is needed to read the provider's user list")
    return key


async def _get(
    http: httpx.AsyncClient,
    provider: ProviderKind,
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


def _users(
    provider: ProviderKind, items: Any, mapper: Callable[[Mapping[str, Any]], ProviderUser]
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


class _Progress:
    """Stops a provider that ignores our paging parameters from looping forever."""

    def __init__(self, provider: ProviderKind) -> None:
        self.provider = provider
        self.seen: set[str] = set()

    def check(self, page: list[ProviderUser]) -> None:
        subjects = {user.subject for user in page}
        if subjects and subjects <= self.seen:
            raise ProviderAPIError(f"{self.provider} API: paging is not advancing (a page repeated)")
        self.seen |= subjects


def _clerk_headers(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {_api_key(settings.clerk_secret_key, 'CLERK_SECRET_KEY')}"}


def _workos_headers(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {_api_key(settings.workos_api_key, 'WORKOS_API_KEY')}"}


def _supabase_headers(settings: Settings) -> dict[str, str]:
    key = _api_key(settings.supabase_service_role_key, "SUPABASE_SERVICE_ROLE_KEY")
    if not settings.supabase_base:
        raise ValueError("SUPABASE_URL is not set; it is needed to read the provider's user list")
    return {"apikey": key, "Authorization": f"Bearer {key}"}


def _supabase_user(item: Mapping[str, Any]) -> ProviderUser:
    # The admin API names the metadata `user_metadata`; the auth.users row calls it `raw_user_meta_data`.
    return supabase_user(item, metadata_key="user_metadata")


async def _clerk_pages(settings: Settings, http: httpx.AsyncClient) -> AsyncIterator[list[ProviderUser]]:
    headers = _clerk_headers(settings)
    url = f"{settings.clerk_api_url.rstrip('/')}/v1/users"
    progress = _Progress("clerk")
    offset = 0
    while True:
        # Oldest first: users created while we page are appended at the end, not shifted into view twice.
        params: dict[str, str | int] = {"limit": PAGE_SIZE, "offset": offset, "order_by": "created_at"}
        body = await _get(http, "clerk", url, headers, params)
        # The Backend API answers a bare array; accept the SDKs' `{data, total_count}` shape as well.
        items = body.get("data") if isinstance(body, dict) else body
        page = _users("clerk", items, clerk_user)
        progress.check(page)
        if page:
            yield page
        if len(page) < PAGE_SIZE:
            return
        offset += len(page)


async def _workos_pages(settings: Settings, http: httpx.AsyncClient) -> AsyncIterator[list[ProviderUser]]:
    headers = _workos_headers(settings)
    url = f"{settings.workos_api_url.rstrip('/')}/user_management/users"
    progress = _Progress("workos")
    after: str | None = None
    while True:
        # Ascending, so a user created mid-run lands ahead of the cursor rather than behind it.
        params: dict[str, str | int] = {"limit": PAGE_SIZE, "order": "asc"}
        if after is not None:
            params["after"] = after
        body = await _get(http, "workos", url, headers, params)
        if not isinstance(body, dict):
            raise ProviderAPIError("workos API: the user list is not a JSON object")
        page = _users("workos", body.get("data"), workos_user)
        progress.check(page)
        if page:
            yield page
        metadata = body.get("list_metadata")
        cursor = metadata.get("after") if isinstance(metadata, dict) else None
        if cursor is None:
            return
        if not isinstance(cursor, str) or not cursor or cursor == after:
            raise ProviderAPIError("workos API: list_metadata.after is not a new cursor")
        after = cursor


async def _supabase_pages(settings: Settings, http: httpx.AsyncClient) -> AsyncIterator[list[ProviderUser]]:
    headers = _supabase_headers(settings)
    url = f"{settings.supabase_base}/auth/v1/admin/users"
    progress = _Progress("supabase")
    page_number = 1
    while True:
        # GoTrue also sends `x-total-count` and a `Link` header; a short page is the simplest end signal.
        params: dict[str, str | int] = {"page": page_number, "per_page": PAGE_SIZE}
        body = await _get(http, "supabase", url, headers, params)
        if not isinstance(body, dict):
            raise ProviderAPIError("supabase API: the user list is not a JSON object")
        page = _users("supabase", body.get("users"), _supabase_user)
        progress.check(page)
        if page:
            yield page
        if len(page) < PAGE_SIZE:
            return
        page_number += 1


async def iter_users(
    provider: ProviderKind, settings: Settings, http: httpx.AsyncClient
) -> AsyncIterator[list[ProviderUser]]:
    """Yield the provider's users one page at a time (no empty pages).

    Raises ValueError naming the variable when the API key is missing (before any request), and
    ProviderAPIError (with `.status` for HTTP errors) when the API fails or answers nonsense.
    """
    pages: Callable[[Settings, httpx.AsyncClient], AsyncIterator[list[ProviderUser]]]
    if provider == "clerk":
        pages = _clerk_pages
    elif provider == "workos":
        pages = _workos_pages
    elif provider == "supabase":
        pages = _supabase_pages
    else:
        raise ValueError(f"unknown provider {provider!r}; use clerk, workos or supabase")
    async for page in pages(settings, http):
        yield page


async def fetch_user(
    provider: ProviderKind, subject: str, settings: Settings, http: httpx.AsyncClient
) -> ProviderUser | None:
    """One user by subject, or None when the provider answers 404.

    Reconcile can confirm a user is really gone before tombstoning it: offset paging (Clerk,
    Supabase) skips a user when another is deleted between two page requests.
    """
    segment = quote(subject, safe="")
    mapper: Callable[[Mapping[str, Any]], ProviderUser]
    if provider == "clerk":
        headers = _clerk_headers(settings)
        url = f"{settings.clerk_api_url.rstrip('/')}/v1/users/{segment}"
        mapper = clerk_user
    elif provider == "workos":
        headers = _workos_headers(settings)
        url = f"{settings.workos_api_url.rstrip('/')}/user_management/users/{segment}"
        mapper = workos_user
    elif provider == "supabase":
        headers = _supabase_headers(settings)
        url = f"{settings.supabase_base}/auth/v1/admin/users/{segment}"
        mapper = _supabase_user
    else:
        raise ValueError(f"unknown provider {provider!r}; use clerk, workos or supabase")
    body = await _get(http, provider, url, headers, allow_404=True)
    if body is None:
        return None
    if not isinstance(body, dict):
        raise ProviderAPIError(f"{provider} API: the user is not a JSON object")
    return _users(provider, [body], mapper)[0]
