"""Reading provider JSON (webhook bodies, user-list records) defensively: every defect is a
`MalformedPayload`, and every value returned is one PostgreSQL can store."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

import orjson

from service.providers.events import MalformedPayload, OrganizationEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Longer than any ISO 8601 / PostgreSQL timestamp; refuses to parse megabyte strings as dates.
_MAX_TIMESTAMP_LENGTH = 64
# What PostgreSQL can store and index. A signed but absurd value (a NUL, a megabyte id over a btree
# index) must be a 400 the provider stops retrying, not a database error answered with 503 for days.
MAX_ID_LENGTH = 255
MAX_EMAIL_LENGTH = 320
MAX_DISPLAY_NAME_LENGTH = 200
# An event time further ahead than this is refused: the order guard keeps the newest `updated_at`,
# so one signed event dated 2200 would otherwise freeze the user against every genuine update.
MAX_FUTURE_SKEW = timedelta(minutes=5)

P = ParamSpec("P")
R = TypeVar("R")


def never_raise_other(func: Callable[P, R]) -> Callable[P, R]:
    """Hostile but correctly signed input must never surface as a 500: whatever a parser trips on
    (deep nesting, numbers out of range, odd types) is a malformed payload."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except MalformedPayload:
            raise
        except (
            ValueError,  # includes orjson.JSONDecodeError and UnicodeError
            TypeError,
            KeyError,
            AttributeError,
            OverflowError,
            RecursionError,
        ) as exc:
            raise MalformedPayload(f"unreadable payload ({type(exc).__name__})") from None

    return wrapper


def load_object(body: bytes) -> dict[str, Any]:
    try:
        # orjson refuses nesting deeper than 1024 and invalid UTF-8 itself, without recursing in Python.
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedPayload("body is not valid JSON") from None
    if not isinstance(value, dict):
        raise MalformedPayload("body is not a JSON object")
    return value


def object_at(container: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = container.get(key)
    if not isinstance(value, dict):
        raise MalformedPayload(f"{key} must be an object")
    return value


def required_str(container: Mapping[str, Any], key: str) -> str:
    value = container.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedPayload(f"{key} must be a non-empty string")
    return value


def optional_str(container: Mapping[str, Any], key: str) -> str | None:
    """A string field that may be absent or null; an empty string counts as absent."""
    value = container.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedPayload(f"{key} must be a string or null")
    return value or None


def _storable(value: str, key: str, max_length: int) -> str:
    if "\x00" in value:
        raise MalformedPayload(f"{key} contains a NUL character")
    if len(value) > max_length:
        raise MalformedPayload(f"{key} is longer than {max_length} characters")
    return value


def id_at(container: Mapping[str, Any], key: str) -> str:
    return _storable(required_str(container, key), key, MAX_ID_LENGTH)


def id_text(value: str, key: str) -> str:
    """An identifier-like string already read from the payload (e.g. a role name), made storable."""
    if not value:
        raise MalformedPayload(f"{key} must be a non-empty string")
    return _storable(value, key, MAX_ID_LENGTH)


def email_at(container: Mapping[str, Any], key: str) -> str | None:
    value = optional_str(container, key)
    return None if value is None else _storable(value, key, MAX_EMAIL_LENGTH)


def free_text_at(container: Mapping[str, Any], key: str) -> str | None:
    """A field of user-editable free-form JSON: a non-string is skipped, not an error."""
    value = container.get(key)
    return value if isinstance(value, str) else None


def _not_in_future(value: datetime, key: str) -> datetime:
    if value > datetime.now(UTC) + MAX_FUTURE_SKEW:
        raise MalformedPayload(f"{key} lies in the future")
    return value


def millis(value: Any, key: str) -> datetime:
    """An event time in integer Unix milliseconds (Clerk)."""
    # bool is an int subclass; `true` is not a timestamp.
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedPayload(f"{key} must be integer Unix milliseconds")
    try:
        return _not_in_future(_EPOCH + timedelta(milliseconds=value), key)
    except OverflowError:
        raise MalformedPayload(f"{key} is out of range") from None


def timestamp(value: Any, key: str) -> datetime:
    """An event time in ISO 8601, or PostgreSQL's text form ("2024-01-01 12:00:00.123456+00");
    naive means UTC."""
    if not isinstance(value, str) or not value or len(value) > _MAX_TIMESTAMP_LENGTH:
        raise MalformedPayload(f"{key} must be a timestamp string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedPayload(f"{key} is not a timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return _not_in_future(parsed.astimezone(UTC), key)
    except OverflowError:
        raise MalformedPayload(f"{key} is out of range") from None


def optional_timestamp(container: Mapping[str, Any], key: str) -> datetime | None:
    value = container.get(key)
    return None if value is None else timestamp(value, key)


def _name_part(value: str | None) -> str:
    return (value or "").replace("\x00", "").strip()


def display_name(*parts: str | None, fallback: str | None = None) -> str | None:
    """The non-blank parts joined, else the fallback.

    Names are free text a user typed: cleaned of NULs and shortened rather than refused, so the
    account still syncs.
    """
    name = " ".join(filter(None, map(_name_part, parts))) or _name_part(fallback)
    return name[:MAX_DISPLAY_NAME_LENGTH].rstrip() or None


def organization_event(
    provider: str, data: Mapping[str, Any], event_id: str, event_type: str, occurred_at: datetime | None
) -> OrganizationEvent:
    """`organization.created|updated|deleted` as Clerk and WorkOS both send it: `data` is the
    Organization object (`id` "org_…", `name`); a deletion may carry only its id."""
    deleted = event_type == "organization.deleted"
    return OrganizationEvent(
        kind="delete" if deleted else "upsert",
        provider=provider,
        event_id=event_id,
        event_type=event_type,
        org_id=id_at(data, "id"),
        name=None if deleted else display_name(optional_str(data, "name")),
        occurred_at=occurred_at,
    )
