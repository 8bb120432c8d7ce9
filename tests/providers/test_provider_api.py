"""Paging through providers' user lists (respx-mocked), for reconcile."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from service.config import Settings
from service.providers import fetch_user, iter_users
from service.providers.api import PAGE_SIZE, ProviderAPIError
from service.providers.events import ProviderUser

CLERK_KEY = "sk_test_clerk_secret_key"
WORKOS_KEY = "sk_test_workos_api_key"
SUPABASE_KEY = "service-role-jwt"
CLERK_API = "https://clerk.test"
WORKOS_API = "https://workos.test"
SUPABASE_URL = "https://ref.supabase.test"


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "auth_providers": ["dev"],
        "clerk_secret_key": CLERK_KEY,
        "clerk_api_url": CLERK_API,
        "workos_api_key": WORKOS_KEY,
        "workos_api_url": WORKOS_API,
        "supabase_service_role_key": SUPABASE_KEY,
        "supabase_url": SUPABASE_URL + "/",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


async def collect(provider: Any, settings: Settings) -> list[list[ProviderUser]]:
    async with httpx.AsyncClient() as http:
        return [page async for page in iter_users(provider, settings, http)]


def clerk_user_json(n: int) -> dict[str, Any]:
    return {
        "id": f"user_{n}",
        "primary_email_address_id": f"idn_{n}",
        "email_addresses": [
            {"id": "idn_other", "email_address": "x@example.com"},
            {"id": f"idn_{n}", "email_address": f"u{n}@example.com"},
        ],
        "first_name": "User",
        "last_name": str(n),
        "updated_at": 1_700_000_000_000 + n,
    }


def workos_user_json(n: int) -> dict[str, Any]:
    return {
        "object": "user",
        "id": f"user_{n:04d}",
        "email": f"w{n}@example.com",
        "first_name": "W",
        "last_name": None,
        "updated_at": "2024-05-01T00:00:00.000Z",
    }


def supabase_user_json(n: int) -> dict[str, Any]:
    return {
        "id": f"00000000-0000-0000-0000-{n:012d}",
        "email": f"s{n}@example.com",
        "user_metadata": {"full_name": f"Supa {n}"},
        "raw_user_meta_data": {"full_name": "must not be read from the admin API"},
        "updated_at": "2024-05-01T10:00:00.5Z",
    }


def paged(total: int, make: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
    return [make(n) for n in range(total)]


# --- Clerk -------------------------------------------------------------------------------------


@pytest.mark.parametrize("wrapped", [False, True], ids=["array", "data-object"])
async def test_clerk_pages_until_short_page(wrapped: bool) -> None:
    users = paged(2 * PAGE_SIZE + 7, clerk_user_json)
    seen_offsets: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == f"Bearer {CLERK_KEY}"
        params = request.url.params
        assert params["limit"] == str(PAGE_SIZE)
        assert params["order_by"] == "created_at"
        offset = int(params["offset"])
        seen_offsets.append(offset)
        chunk = users[offset : offset + PAGE_SIZE]
        return httpx.Response(200, json={"data": chunk, "total_count": len(users)} if wrapped else chunk)

    with respx.mock(assert_all_mocked=True) as router:
        router.get(f"{CLERK_API}/v1/users").mock(side_effect=answer)
        pages = await collect("clerk", make_settings())

    assert seen_offsets == [0, PAGE_SIZE, 2 * PAGE_SIZE]
    assert [len(page) for page in pages] == [PAGE_SIZE, PAGE_SIZE, 7]
    first = pages[0][0]
    assert first == ProviderUser(
        "user_0", "u0@example.com", "User 0", datetime.fromtimestamp(1_700_000_000, tz=UTC)
    )


async def test_clerk_exact_multiple_ends_on_empty_page_without_yielding_it() -> None:
    users = paged(PAGE_SIZE, clerk_user_json)
    with respx.mock() as router:
        route = router.get(f"{CLERK_API}/v1/users").mock(
            side_effect=[httpx.Response(200, json=users), httpx.Response(200, json=[])]
        )
        pages = await collect("clerk", make_settings())
    assert route.call_count == 2
    assert [len(page) for page in pages] == [PAGE_SIZE]


async def test_clerk_no_users_yields_nothing() -> None:
    with respx.mock() as router:
        router.get(f"{CLERK_API}/v1/users").mock(return_value=httpx.Response(200, json=[]))
        assert await collect("clerk", make_settings()) == []


# --- WorkOS ------------------------------------------------------------------------------------


async def test_workos_follows_cursor_until_after_is_null() -> None:
    users = paged(2 * PAGE_SIZE + 3, workos_user_json)
    cursors: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == f"Bearer {WORKOS_KEY}"
        assert request.url.params["limit"] == str(PAGE_SIZE)
        after = request.url.params.get("after")
        cursors.append(after)
        start = 0 if after is None else next(i for i, u in enumerate(users) if u["id"] == after) + 1
        chunk = users[start : start + PAGE_SIZE]
        more = start + PAGE_SIZE < len(users)
        metadata = {"before": chunk[0]["id"], "after": chunk[-1]["id"] if more else None}
        return httpx.Response(200, json={"object": "list", "data": chunk, "list_metadata": metadata})

    with respx.mock() as router:
        router.get(f"{WORKOS_API}/user_management/users").mock(side_effect=answer)
        pages = await collect("workos", make_settings())

    assert cursors == [None, f"user_{PAGE_SIZE - 1:04d}", f"user_{2 * PAGE_SIZE - 1:04d}"]
    assert [len(page) for page in pages] == [PAGE_SIZE, PAGE_SIZE, 3]
    assert pages[2][-1] == ProviderUser(
        f"user_{2 * PAGE_SIZE + 2:04d}",
        f"w{2 * PAGE_SIZE + 2}@example.com",
        "W",
        datetime(2024, 5, 1, tzinfo=UTC),
    )


async def test_workos_repeated_cursor_is_an_error_not_a_loop() -> None:
    body = {"data": [workos_user_json(1)], "list_metadata": {"before": None, "after": "user_0001"}}
    with respx.mock() as router:
        router.get(f"{WORKOS_API}/user_management/users").mock(return_value=httpx.Response(200, json=body))
        with pytest.raises(ProviderAPIError, match="repeated"):
            await collect("workos", make_settings())


# --- Supabase ----------------------------------------------------------------------------------


async def test_supabase_pages_until_short_page() -> None:
    users = paged(PAGE_SIZE + 1, supabase_user_json)
    pages_asked: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["apikey"] == SUPABASE_KEY
        assert request.headers["Authorization"] == f"Bearer {SUPABASE_KEY}"
        assert request.url.params["per_page"] == str(PAGE_SIZE)
        page = int(request.url.params["page"])
        pages_asked.append(page)
        chunk = users[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        return httpx.Response(
            200, json={"users": chunk, "aud": "authenticated"}, headers={"x-total-count": "101"}
        )

    with respx.mock() as router:
        router.get(f"{SUPABASE_URL}/auth/v1/admin/users").mock(side_effect=answer)
        pages = await collect("supabase", make_settings())

    assert pages_asked == [1, 2]
    assert [len(page) for page in pages] == [PAGE_SIZE, 1]
    assert pages[0][0].display_name == "Supa 0"
    assert pages[0][0].updated_at == datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)


async def test_supabase_soft_deleted_user_is_read_as_deleted() -> None:
    # The same rule as the webhook (parse_supabase): deleted_at set means the user is gone.
    users = [supabase_user_json(1), {**supabase_user_json(2), "deleted_at": "2024-05-02T10:00:00Z"}]
    with respx.mock() as router:
        router.get(f"{SUPABASE_URL}/auth/v1/admin/users").mock(
            return_value=httpx.Response(200, json={"users": users})
        )
        pages = await collect("supabase", make_settings())
    assert [user.deleted for user in pages[0]] == [False, True]


async def test_supabase_ignoring_page_parameter_is_an_error_not_a_loop() -> None:
    body = {"users": paged(PAGE_SIZE, supabase_user_json)}
    with respx.mock() as router:
        router.get(f"{SUPABASE_URL}/auth/v1/admin/users").mock(return_value=httpx.Response(200, json=body))
        with pytest.raises(ProviderAPIError, match="repeated"):
            await collect("supabase", make_settings())


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "setting", "variable"),
    [
        ("clerk", "clerk_secret_key", "CLERK_SECRET_KEY"),
        ("workos", "workos_api_key", "WORKOS_API_KEY"),
        ("supabase", "supabase_service_role_key", "SUPABASE_SERVICE_ROLE_KEY"),
        ("supabase", "supabase_url", "SUPABASE_URL"),
    ],
)
async def test_missing_configuration_names_the_variable_before_any_request(
    provider: str, setting: str, variable: str
) -> None:
    with respx.mock(assert_all_mocked=True) as router:
        with pytest.raises(ValueError, match=variable):
            await collect(provider, make_settings(**{setting: None}))
        assert not router.calls


@pytest.mark.parametrize(
    ("provider", "url", "key"),
    [
        ("clerk", f"{CLERK_API}/v1/users", CLERK_KEY),
        ("workos", f"{WORKOS_API}/user_management/users", WORKOS_KEY),
        ("supabase", f"{SUPABASE_URL}/auth/v1/admin/users", SUPABASE_KEY),
    ],
)
@pytest.mark.parametrize("status", [401, 429, 500])
async def test_http_error_carries_status_not_key(provider: str, url: str, key: str, status: int) -> None:
    with respx.mock() as router:
        router.get(url).mock(return_value=httpx.Response(status, json={"error": "nope"}))
        with pytest.raises(ProviderAPIError) as caught:
            await collect(provider, make_settings())
    assert caught.value.status == status
    assert str(status) in str(caught.value)
    assert key not in str(caught.value)


async def test_network_failure_is_a_provider_error() -> None:
    with respx.mock() as router:
        router.get(f"{CLERK_API}/v1/users").mock(side_effect=httpx.ConnectError("refused"))
        with pytest.raises(ProviderAPIError, match="ConnectError"):
            await collect("clerk", make_settings())


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>"),
        httpx.Response(200, json={"unexpected": True}),
        httpx.Response(200, json=[{"id": "user_1", "updated_at": "not-ms"}]),
        httpx.Response(200, json=["user_1"]),
        # The mapper refuses what PostgreSQL cannot store, for reconcile as for the webhook.
        httpx.Response(200, json=[{**clerk_user_json(1), "id": "user_\x00"}]),
    ],
    ids=["not-json", "wrong-shape", "unreadable-user", "entry-not-object", "unstorable-user"],
)
async def test_unusable_answer_aborts_rather_than_skipping(response: httpx.Response) -> None:
    with respx.mock() as router:
        router.get(f"{CLERK_API}/v1/users").mock(return_value=response)
        with pytest.raises(ProviderAPIError):
            await collect("clerk", make_settings())


# --- fetch_user --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "url", "body", "subject"),
    [
        ("clerk", f"{CLERK_API}/v1/users/user_7", clerk_user_json(7), "user_7"),
        ("workos", f"{WORKOS_API}/user_management/users/user_0007", workos_user_json(7), "user_0007"),
        (
            "supabase",
            f"{SUPABASE_URL}/auth/v1/admin/users/00000000-0000-0000-0000-000000000007",
            supabase_user_json(7),
            "00000000-0000-0000-0000-000000000007",
        ),
    ],
)
async def test_fetch_user_found_and_gone(provider: Any, url: str, body: dict[str, Any], subject: str) -> None:
    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            router.get(url).mock(side_effect=[httpx.Response(200, json=body), httpx.Response(404, json={})])
            found = await fetch_user(provider, subject, make_settings(), http)
            gone = await fetch_user(provider, subject, make_settings(), http)
    assert found is not None and found.subject == subject
    assert gone is None


async def test_fetch_user_escapes_the_subject() -> None:
    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            route = router.get(f"{CLERK_API}/v1/users/..%2Fadmin").mock(return_value=httpx.Response(404))
            assert await fetch_user("clerk", "../admin", make_settings(), http) is None
    assert route.called
