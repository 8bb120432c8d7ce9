"""A signed update dated far in the future is refused (400): kept, it would win the order guard against
every genuine update until that date, freezing the user's email."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.kit.sql import SqlAdmin
from tests.webhooks.conftest import (
    CLERK,
    SUPABASE,
    WORKOS,
    clerk_signed,
    clerk_user_event,
    ledger_count,
    supabase_event,
    supabase_signed,
    user_count,
    user_row,
    workos_signed,
    workos_user_event,
)

FAR_FUTURE = datetime(2200, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Receiver:
    """How one provider dates and delivers a `user.updated` for `subject`."""

    provider: str
    path: str
    subject: str
    deliver: Callable[[str, str, datetime], tuple[bytes, dict[str, str]]]


def _clerk(subject: str, email: str, at: datetime) -> tuple[bytes, dict[str, str]]:
    # Clerk: integer Unix milliseconds in data.updated_at.
    return clerk_signed(clerk_user_event(subject, email=email, updated_ms=int(at.timestamp() * 1000)))


def _workos(subject: str, email: str, at: datetime) -> tuple[bytes, dict[str, str]]:
    # WorkOS: ISO 8601 in data.updated_at.
    iso = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return workos_signed(workos_user_event(subject, email=email, updated_at=iso))


def _supabase(subject: str, email: str, at: datetime) -> tuple[bytes, dict[str, str]]:
    # Supabase: PostgreSQL's text form in record.updated_at.
    text = at.strftime("%Y-%m-%d %H:%M:%S.%f+00")
    return supabase_signed(supabase_event("UPDATE", subject, email=email, updated_at=text))


RECEIVERS = [
    Receiver("clerk", CLERK, "user_future", _clerk),
    Receiver("workos", WORKOS, "user_01FUTURE", _workos),
    Receiver("supabase", SUPABASE, "6f1d0a38-2222-4c4e-9a55-00000000f00d", _supabase),
]
IDS = [receiver.provider for receiver in RECEIVERS]


async def send(client: httpx.AsyncClient, receiver: Receiver, email: str, at: datetime) -> httpx.Response:
    body, headers = receiver.deliver(receiver.subject, email, at)
    return await client.post(receiver.path, content=body, headers=headers)


def now() -> datetime:
    return datetime.now(UTC)


async def snapshot(db: SqlAdmin, receiver: Receiver) -> tuple[Any, int, int]:
    return (
        await user_row(db, receiver.provider, receiver.subject),
        await user_count(db),
        await ledger_count(db),
    )


@pytest.mark.parametrize("receiver", RECEIVERS, ids=IDS)
async def test_a_far_future_update_of_a_new_user_is_400_and_writes_nothing(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin, receiver: Receiver
) -> None:
    response = await send(hooks, receiver, "future@example.com", FAR_FUTURE)

    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert await snapshot(clean_db, receiver) == (None, 0, 0)


@pytest.mark.parametrize("receiver", RECEIVERS, ids=IDS)
async def test_a_far_future_update_cannot_freeze_a_user_against_later_genuine_updates(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin, receiver: Receiver
) -> None:
    created = await send(hooks, receiver, "before@example.com", now() - timedelta(minutes=1))
    assert created.status_code == 204, created.text
    before = await snapshot(clean_db, receiver)

    future = await send(hooks, receiver, "future@example.com", FAR_FUTURE)
    assert future.status_code == 400, future.text
    assert await snapshot(clean_db, receiver) == before  # row, users and ledger untouched

    later = await send(hooks, receiver, "after@example.com", now())
    assert later.status_code == 204, later.text
    row = await user_row(clean_db, receiver.provider, receiver.subject)
    assert row is not None and row.email == "after@example.com"
    assert row.provider_updated_at <= now()


@pytest.mark.parametrize("receiver", RECEIVERS, ids=IDS)
async def test_an_update_within_the_clock_skew_allowance_still_applies(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin, receiver: Receiver
) -> None:
    # A sender whose clock runs a minute ahead of ours is not an attack.
    response = await send(hooks, receiver, "skewed@example.com", now() + timedelta(minutes=1))
    assert response.status_code == 204, response.text
    row = await user_row(clean_db, receiver.provider, receiver.subject)
    assert row is not None and row.email == "skewed@example.com"
