"""Keyset pagination, newest first, with opaque cursors bound to the list they came from.

A cursor is the (created_at, id) of the last item served plus the list's scope, with a checksum.
It is not a secret and grants nothing (every query is already scoped to its caller); the scope and
the checksum make a tampered or foreign cursor a clear 422 instead of a silently wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from service.core.errors import ValidationFailed

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
_CHECK_KEY = b"routebook-cursor-v1"
_CHECK_BYTES = 8
# The checksum key is public, so anyone can forge a cursor: its timestamp must be one PostgreSQL can
# compare (asyncpg cannot send year 0 or 10000) and, for a row of ours, a plausible one.
_YEARS = range(1970, 10_000)


@dataclass(frozen=True, slots=True)
class Cursor:
    created_at: datetime
    id: uuid.UUID


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int
    cursor: str | None


async def page_request(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page (1–100).")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(max_length=512, description="`next_cursor` of the previous page; omit for the first."),
    ] = None,
) -> PageRequest:
    return PageRequest(limit=limit, cursor=cursor)


class Page(BaseModel, Generic[T]):
    """A list response. Parametrise it once, at import (`SessionPage = Page[SessionRead]`), never per
    request: each `Page[X]` is a new class."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Paged(Generic[R]):
    """One page of records; a route's `response_model` (a `Page[...]`) reads it by attribute."""

    items: Sequence[R]
    next_cursor: str | None


def _check(payload: bytes) -> bytes:
    # hmac.digest: OpenSSL's one-shot HMAC, without an HMAC object per cursor.
    return hmac.digest(_CHECK_KEY, payload, "sha256")[:_CHECK_BYTES]


def encode_cursor(scope: str, created_at: datetime, item_id: uuid.UUID) -> str:
    payload = f"{scope}|{created_at.isoformat()}|{item_id}".encode()
    return base64.urlsafe_b64encode(_check(payload) + payload).decode().rstrip("=")


def _invalid() -> ValidationFailed:
    return ValidationFailed(
        [
            {
                "loc": ["query", "cursor"],
                "msg": "The cursor is not valid for this list.",
                "type": "cursor_invalid",
            }
        ]
    )


def decode_cursor(scope: str, token: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        check, payload = raw[:_CHECK_BYTES], raw[_CHECK_BYTES:]
        if not hmac.compare_digest(check, _check(payload)):
            raise ValueError("checksum")
        cursor_scope, created_at, item_id = payload.decode().split("|")
        if cursor_scope != scope:
            raise ValueError("scope")
        parsed = datetime.fromisoformat(created_at)
        if parsed.tzinfo is None:
            raise ValueError("naive timestamp")
        parsed = parsed.astimezone(UTC)
        if parsed.year not in _YEARS:
            raise ValueError("timestamp out of range")
        return Cursor(created_at=parsed, id=uuid.UUID(item_id))
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise _invalid() from None


def next_cursor(scope: str, rows: Sequence[Any], limit: int) -> str | None:
    """Callers fetch `limit + 1` rows; an extra row means there is a next page."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor(scope, last.created_at, last.id)


async def paginate(
    scope: str, page: PageRequest, fetch: Callable[[int, Cursor | None], Awaitable[Sequence[R]]]
) -> Paged[R]:
    """One page of a list: decode the cursor, fetch `limit + 1` rows, say whether there is more."""
    cursor = decode_cursor(scope, page.cursor) if page.cursor else None
    rows = await fetch(page.limit, cursor)
    return Paged(items=rows[: page.limit], next_cursor=next_cursor(scope, rows, page.limit))
