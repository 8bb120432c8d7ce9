"""Verified webhook bodies → one normalized `UserEvent`, whatever the provider.

Only call these after the signature has been checked. Every defect of a body, from invalid JSON
to 10,000 levels of nesting to a field of the wrong type, raises `MalformedPayload` (→ 400) and
nothing else, and whatever is returned is storable as it is. The user-field mappings
(`clerk_user`, `workos_user`, `supabase_user`) are shared with `provider_api`, so a webhook and a
reconcile run read a user the same way, soft deletes included.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, ParamSpec, TypeVar

import orjson

__all__ = [
    "MAX_ID_LENGTH",
    "EventKind",
    "MalformedPayload",
    "Provider",
    "ProviderUser",
    "UserEvent",
    "clerk_user",
    "parse_clerk",
    "parse_supabase",
    "parse_workos",
    "supabase_user",
    "workos_user",
]

Provider = Literal["clerk", "workos", "supabase"]
EventKind = Literal["upsert", "delete", "session_revoked", "ignored"]

CLERK_UPSERT = frozenset({"user.created", "user.updated"})
CLERK_SESSION_END = frozenset({"session.revoked", "session.ended", "session.removed"})
WORKOS_UPSERT = frozenset({"user.created", "user.updated"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Longer than any ISO 8601 / PostgreSQL timestamp; refuses to parse megabyte strings as dates.
_MAX_TIMESTAMP_LENGTH = 64
# What PostgreSQL can store and index. A signed but absurd value (a NUL, a megabyte id over a btree
# index) must be a 400 the provider stops retrying, not a database error answered with 503 for days.
MAX_ID_LENGTH = 255
MAX_EMAIL_LENGTH = 320
MAX_DISPLAY_NAME_LENGTH = 200

P = ParamSpec("P")
R = TypeVar("R")


class MalformedPayload(Exception):
    """A verified body that is not a usable event (→ 400)."""


@dataclass(frozen=True)
class ProviderUser:
    """A user as a provider describes it: the fields Routebook keeps, nothing more.

    `deleted` is a user the provider still lists but has deleted (Supabase's soft delete).
    """

    subject: str
    email: str | None
    display_name: str | None
    updated_at: datetime | None
    deleted: bool = False


@dataclass(frozen=True)
class UserEvent:
    """What a delivery asks of us. `updated_at` is tz-aware UTC; `event_id` is the de-duplication key."""

    kind: EventKind
    provider: Provider
    event_id: str | None
    subject: str | None
    email: str | None
    display_name: str | None
    updated_at: datetime | None
    session_id: str | None
    event_type: str

    @property
    def user(self) -> ProviderUser:
        """The upserted user (only meaningful for kind == "upsert")."""
        if self.subject is None:
            raise ValueError(f"a {self.kind} event carries no user")
        return ProviderUser(self.subject, self.email, self.display_name, self.updated_at)


def _never_raise_other(func: Callable[P, R]) -> Callable[P, R]:
    # Hostile but correctly signed input must never surface as a 500: whatever a parser trips on
    # (deep nesting, numbers out of range, odd types) is a malformed payload.
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


def _load_object(body: bytes) -> dict[str, Any]:
    try:
        # orjson refuses nesting deeper than 1024 and invalid UTF-8 itself, without recursing in Python.
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedPayload("body is not valid JSON") from None
    if not isinstance(value, dict):
        raise MalformedPayload("body is not a JSON object")
    return value


def _object(container: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = container.get(key)
    if not isinstance(value, dict):
        raise MalformedPayload(f"{key} must be an object")
    return value


def _required_str(container: Mapping[str, Any], key: str) -> str:
    value = container.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedPayload(f"{key} must be a non-empty string")
    return value


def _optional_str(container: Mapping[str, Any], key: str) -> str | None:
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


def _id(container: Mapping[str, Any], key: str) -> str:
    return _storable(_required_str(container, key), key, MAX_ID_LENGTH)


def _email(container: Mapping[str, Any], key: str) -> str | None:
    value = _optional_str(container, key)
    return None if value is None else _storable(value, key, MAX_EMAIL_LENGTH)


def _free_text(container: Mapping[str, Any], key: str) -> str | None:
    """A field of user-editable free-form JSON: a non-string is skipped, not an error."""
    value = container.get(key)
    return value if isinstance(value, str) else None


def _millis(value: Any, key: str) -> datetime:
    # bool is an int subclass; `true` is not a timestamp.
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedPayload(f"{key} must be integer Unix milliseconds")
    try:
        return _EPOCH + timedelta(milliseconds=value)
    except OverflowError:
        raise MalformedPayload(f"{key} is out of range") from None


def _timestamp(value: Any, key: str) -> datetime:
    """ISO 8601, or PostgreSQL's text form ("2024-01-01 12:00:00.123456+00"); naive means UTC."""
    if not isinstance(value, str) or not value or len(value) > _MAX_TIMESTAMP_LENGTH:
        raise MalformedPayload(f"{key} must be a timestamp string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedPayload(f"{key} is not a timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise MalformedPayload(f"{key} is out of range") from None


def _optional_timestamp(container: Mapping[str, Any], key: str) -> datetime | None:
    value = container.get(key)
    return None if value is None else _timestamp(value, key)


def _name_part(value: str | None) -> str:
    return (value or "").replace("\x00", "").strip()


def _display_name(*parts: str | None, fallback: str | None = None) -> str | None:
    """The non-blank parts joined, else the fallback.

    Names are free text a user typed: cleaned of NULs and shortened rather than refused, so the
    account still syncs.
    """
    name = " ".join(filter(None, map(_name_part, parts))) or _name_part(fallback)
    return name[:MAX_DISPLAY_NAME_LENGTH].rstrip() or None


def clerk_user(data: Mapping[str, Any]) -> ProviderUser:
    """A Clerk user object (webhook `data` or a `GET /v1/users` item)."""
    subject = _id(data, "id")
    primary_id = _optional_str(data, "primary_email_address_id")
    addresses = data.get("email_addresses")
    if addresses is None:
        addresses = []
    if not isinstance(addresses, list):
        raise MalformedPayload("email_addresses must be a list")
    email = None
    for entry in addresses:
        if not isinstance(entry, dict):
            raise MalformedPayload("email_addresses entries must be objects")
        # The primary address is named by id; list order means nothing.
        if primary_id is not None and entry.get("id") == primary_id:
            email = _email(entry, "email_address")
            break
    display_name = _display_name(
        _optional_str(data, "first_name"),
        _optional_str(data, "last_name"),
        fallback=_optional_str(data, "username"),
    )
    updated_at = _millis(data.get("updated_at"), "updated_at")
    return ProviderUser(subject, email, display_name, updated_at)


def workos_user(data: Mapping[str, Any]) -> ProviderUser:
    """A WorkOS user object (webhook `data` or a `GET /user_management/users` item)."""
    subject = _id(data, "id")
    display_name = _display_name(_optional_str(data, "first_name"), _optional_str(data, "last_name"))
    updated_at = _timestamp(data.get("updated_at"), "updated_at")
    return ProviderUser(subject, _email(data, "email"), display_name, updated_at)


def supabase_user(record: Mapping[str, Any], metadata_key: str = "raw_user_meta_data") -> ProviderUser:
    """A Supabase user: an `auth.users` row (`raw_user_meta_data`) or an admin API user (`user_metadata`).

    Rows carry sensitive columns (password hash, tokens, phone); only id, email, a name,
    updated_at and deleted_at are read, so nothing else can reach storage by accident.
    """
    subject = _id(record, "id")
    metadata = record.get(metadata_key)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise MalformedPayload(f"{metadata_key} must be an object")
    display_name = _display_name(_free_text(metadata, "full_name"), fallback=_free_text(metadata, "name"))
    updated_at = _optional_timestamp(record, "updated_at")
    # Supabase Auth soft-deletes by setting deleted_at; the user stays listed, but is gone for us.
    deleted = _optional_str(record, "deleted_at") is not None
    return ProviderUser(subject, _email(record, "email"), display_name, updated_at, deleted)


def _upsert(provider: Provider, event_id: str | None, event_type: str, user: ProviderUser) -> UserEvent:
    return UserEvent(
        kind="upsert",
        provider=provider,
        event_id=event_id,
        subject=user.subject,
        email=user.email,
        display_name=user.display_name,
        updated_at=user.updated_at,
        session_id=None,
        event_type=event_type,
    )


def _bare(
    kind: EventKind,
    provider: Provider,
    event_id: str | None,
    event_type: str,
    *,
    subject: str | None = None,
    updated_at: datetime | None = None,
    session_id: str | None = None,
) -> UserEvent:
    return UserEvent(
        kind=kind,
        provider=provider,
        event_id=event_id,
        subject=subject,
        email=None,
        display_name=None,
        updated_at=updated_at,
        session_id=session_id,
        event_type=event_type,
    )


@_never_raise_other
def parse_clerk(body: bytes, event_id: str) -> UserEvent:
    """Parse a verified Clerk delivery; `event_id` is its `svix-id`."""
    envelope = _load_object(body)
    event_type = _required_str(envelope, "type")
    data = _object(envelope, "data")
    if event_type in CLERK_UPSERT:
        return _upsert("clerk", event_id, event_type, clerk_user(data))
    if event_type == "user.deleted":
        # `data` is just {object, id, deleted}; the envelope's send time is the best ordering hint.
        sent = envelope.get("timestamp")
        updated_at = None if sent is None else _millis(sent, "timestamp")
        return _bare("delete", "clerk", event_id, event_type, subject=_id(data, "id"), updated_at=updated_at)
    if event_type in CLERK_SESSION_END:
        return _bare(
            "session_revoked",
            "clerk",
            event_id,
            event_type,
            subject=_id(data, "user_id"),
            session_id=_id(data, "id"),
        )
    return _bare("ignored", "clerk", event_id, event_type)


@_never_raise_other
def parse_workos(body: bytes) -> UserEvent:
    """Parse a verified WorkOS delivery; the event `id` is the de-duplication key."""
    envelope = _load_object(body)
    event_id = _id(envelope, "id")
    event_type = _required_str(envelope, "event")
    data = _object(envelope, "data")
    if event_type in WORKOS_UPSERT:
        return _upsert("workos", event_id, event_type, workos_user(data))
    if event_type == "user.deleted":
        return _bare(
            "delete",
            "workos",
            event_id,
            event_type,
            subject=_id(data, "id"),
            updated_at=_optional_timestamp(data, "updated_at"),
        )
    return _bare("ignored", "workos", event_id, event_type)


@_never_raise_other
def parse_supabase(body: bytes) -> UserEvent:
    """Parse a verified Supabase Database Webhook on `auth.users`; it has no stable event id."""
    envelope = _load_object(body)
    event_type = _required_str(envelope, "type")
    table = _required_str(envelope, "table")
    schema = _required_str(envelope, "schema")
    if (schema, table) != ("auth", "users"):
        return _bare("ignored", "supabase", None, event_type)
    if event_type in ("INSERT", "UPDATE"):
        user = supabase_user(_object(envelope, "record"))
        if user.deleted:
            return _bare(
                "delete", "supabase", None, event_type, subject=user.subject, updated_at=user.updated_at
            )
        return _upsert("supabase", None, event_type, user)
    if event_type == "DELETE":
        old = _object(envelope, "old_record")
        return _bare("delete", "supabase", None, event_type, subject=_id(old, "id"))
    return _bare("ignored", "supabase", None, event_type)
