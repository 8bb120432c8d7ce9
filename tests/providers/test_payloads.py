"""Parsing verified webhook bodies into user events: happy paths, missing fields, hostile input.
(Organisation and membership events: test_org_payloads.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.providers.clerk import clerk_user, parse_clerk
from service.providers.events import MalformedPayload, ProviderEvent, ProviderUser, UserEvent
from service.providers.supabase import parse_supabase, supabase_user
from service.providers.workos import parse_workos

CLERK_CREATED = (
    b'{"type":"user.created","object":"event","timestamp":1654012591835,"instance_id":"ins_123",'
    b'"data":{"object":"user","id":"user_29w83sxmDNGwOuEthce5gg56FcC",'
    b'"primary_email_address_id":"idn_29w83yL7CwVlJXylYLxcslromF1",'
    b'"email_addresses":[{"id":"idn_29w83yL7CwVlJXylYLxcslromF1","object":"email_address",'
    b'"email_address":"example@example.org","verification":{"status":"verified","strategy":"ticket"}}],'
    b'"first_name":"Example","last_name":"Example","external_id":"567772","created_at":1654012591514,'
    b'"updated_at":1654012591835}}'
)


def user_event(event: ProviderEvent) -> UserEvent:
    assert isinstance(event, UserEvent), event
    return event


def ms(value: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def clerk_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "object": "user",
        "id": "user_1",
        "primary_email_address_id": "idn_b",
        "email_addresses": [
            {"id": "idn_a", "email_address": "old@example.com"},
            {"id": "idn_b", "email_address": "primary@example.com"},
        ],
        "first_name": "Ada",
        "last_name": "Lovelace",
        "username": "ada",
        "updated_at": 1700000000123,
    }
    data.update(overrides)
    return data


def clerk_body(event_type: str = "user.updated", **overrides: Any) -> bytes:
    return dumps(
        {"type": event_type, "object": "event", "timestamp": 1700000000999, "data": clerk_data(**overrides)}
    )


# --- Clerk -------------------------------------------------------------------------------------


def test_clerk_documented_user_created() -> None:
    event = parse_clerk(CLERK_CREATED, "msg_1")
    assert event == UserEvent(
        kind="upsert",
        provider="clerk",
        event_id="msg_1",
        subject="user_29w83sxmDNGwOuEthce5gg56FcC",
        email="example@example.org",
        display_name="Example Example",
        updated_at=ms(1654012591835),
        session_id=None,
        event_type="user.created",
    )
    assert event.updated_at is not None and event.updated_at.tzinfo is not None
    assert event.user == ProviderUser(
        "user_29w83sxmDNGwOuEthce5gg56FcC", "example@example.org", "Example Example", ms(1654012591835)
    )


def test_clerk_primary_email_chosen_by_id_not_position() -> None:
    event = parse_clerk(clerk_body(), "msg_2")
    assert event.email == "primary@example.com"
    assert event.display_name == "Ada Lovelace"
    assert event.updated_at == ms(1700000000123)


@pytest.mark.parametrize(
    ("overrides", "email"),
    [
        ({"primary_email_address_id": None}, None),
        ({"primary_email_address_id": "idn_gone"}, None),
        ({"email_addresses": []}, None),
        ({"email_addresses": None, "primary_email_address_id": None}, None),
    ],
)
def test_clerk_no_primary_email(overrides: dict[str, Any], email: str | None) -> None:
    assert parse_clerk(clerk_body(**overrides), "m").email == email


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"first_name": "  Ada ", "last_name": None}, "Ada"),
        ({"first_name": None, "last_name": "Lovelace"}, "Lovelace"),
        ({"first_name": None, "last_name": None}, "ada"),
        ({"first_name": " ", "last_name": "", "username": None}, None),
        ({"first_name": None, "last_name": None, "username": "  "}, None),
        ({"first_name": "Zoë", "last_name": "Ωmega 🚲"}, "Zoë Ωmega 🚲"),
    ],
)
def test_clerk_display_name(overrides: dict[str, Any], name: str | None) -> None:
    assert parse_clerk(clerk_body(**overrides), "m").display_name == name


def test_clerk_deleted() -> None:
    body = dumps(
        {
            "type": "user.deleted",
            "timestamp": 1700000000999,
            "data": {"object": "user", "id": "user_1", "deleted": True},
        }
    )
    event = parse_clerk(body, "msg_3")
    assert (event.kind, event.subject, event.updated_at, event.email) == (
        "delete",
        "user_1",
        ms(1700000000999),
        None,
    )
    no_timestamp = dumps({"type": "user.deleted", "data": {"id": "user_1", "deleted": True}})
    assert parse_clerk(no_timestamp, "msg_4").updated_at is None


@pytest.mark.parametrize("event_type", ["session.revoked", "session.ended", "session.removed"])
def test_clerk_session_end(event_type: str) -> None:
    body = dumps(
        {
            "type": event_type,
            "data": {"object": "session", "id": "sess_9", "user_id": "user_1", "status": "revoked"},
        }
    )
    event = parse_clerk(body, "msg_5")
    assert (event.kind, event.session_id, event.subject, event.event_type) == (
        "session_revoked",
        "sess_9",
        "user_1",
        event_type,
    )


@pytest.mark.parametrize(
    "event_type", ["session.created", "organizationInvitation.created", "email.created", "user.whatever"]
)
def test_clerk_other_types_ignored(event_type: str) -> None:
    event = user_event(parse_clerk(dumps({"type": event_type, "data": {"id": 5}}), "msg_6"))
    assert (event.kind, event.subject, event.event_type, event.event_id) == (
        "ignored",
        None,
        event_type,
        "msg_6",
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'"user.created"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"type":"user.created","data":{"id":"u"}}\xff', id="trailing-bad-byte"),
        pytest.param(b'{"type":"\xff\xfe","data":{}}', id="invalid-utf8"),
        pytest.param(dumps({"data": clerk_data()}), id="no-type"),
        pytest.param(dumps({"type": 7, "data": clerk_data()}), id="type-not-string"),
        pytest.param(dumps({"type": "user.created"}), id="no-data"),
        pytest.param(dumps({"type": "user.created", "data": []}), id="data-array"),
        pytest.param(dumps({"type": "session.created", "data": "x"}), id="ignored-type-data-string"),
        pytest.param(clerk_body(id=None), id="id-null"),
        pytest.param(clerk_body(id=123), id="id-int"),
        pytest.param(clerk_body(id=""), id="id-empty"),
        pytest.param(clerk_body(updated_at="1700000000000"), id="updated-at-string"),
        pytest.param(clerk_body(updated_at=None), id="updated-at-null"),
        pytest.param(clerk_body(updated_at=True), id="updated-at-bool"),
        pytest.param(clerk_body(updated_at=1.5), id="updated-at-float"),
        pytest.param(clerk_body(updated_at=10**18), id="updated-at-out-of-range"),
        pytest.param(clerk_body(updated_at=-(10**18)), id="updated-at-negative-out-of-range"),
        pytest.param(
            b'{"type":"user.created","data":{"id":"u","updated_at":1' + b"0" * 400 + b"}}", id="huge-number"
        ),
        pytest.param(clerk_body(email_addresses={"id": "idn_b"}), id="emails-object"),
        pytest.param(clerk_body(email_addresses=["x"]), id="email-entry-string"),
        pytest.param(clerk_body(first_name=["Ada"]), id="first-name-list"),
        pytest.param(dumps({"type": "user.deleted", "data": {"deleted": True}}), id="deleted-no-id"),
        pytest.param(
            dumps({"type": "user.deleted", "timestamp": "x", "data": {"id": "u"}}), id="deleted-bad-ts"
        ),
        pytest.param(dumps({"type": "session.revoked", "data": {"id": "sess_1"}}), id="session-no-user"),
        pytest.param(dumps({"type": "session.revoked", "data": {"user_id": "u"}}), id="session-no-id"),
    ],
)
def test_clerk_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        parse_clerk(body, "msg_x")


def deep(levels: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
    return open_ * levels + close * levels


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(deep(10_000), id="array-10000"),
        pytest.param(
            b'{"type":"user.created","data":' + deep(10_000, b'{"a":', b"}")[:-1] + b"1}" + b"}", id="obj"
        ),
        pytest.param(b'{"type":"user.created","data":{"id":"u","x":' + deep(5000) + b"}}", id="nested-field"),
        pytest.param(b'{"a":' * 100_000, id="unterminated-100000"),
    ],
)
def test_deep_nesting_is_malformed_for_every_parser(body: bytes) -> None:
    for parse in (lambda b: parse_clerk(b, "m"), parse_workos, parse_supabase):
        with pytest.raises(MalformedPayload):
            parse(body)


def test_clerk_user_mapping_is_shared() -> None:
    assert clerk_user(clerk_data()) == ProviderUser(
        "user_1", "primary@example.com", "Ada Lovelace", ms(1700000000123)
    )


# --- WorkOS ------------------------------------------------------------------------------------


def workos_body(event: str = "user.updated", **data_overrides: Any) -> bytes:
    data: dict[str, Any] = {
        "object": "user",
        "id": "user_01H",
        "email": "grace@example.com",
        "email_verified": True,
        "first_name": "Grace",
        "last_name": "Hopper",
        "created_at": "2024-01-01T00:00:00.000Z",
        "updated_at": "2024-02-03T04:05:06.789Z",
    }
    data.update(data_overrides)
    return dumps(
        {
            "object": "event",
            "id": "event_01",
            "event": event,
            "data": data,
            "created_at": "2024-02-03T04:05:07Z",
        }
    )


@pytest.mark.parametrize("event_type", ["user.created", "user.updated"])
def test_workos_upsert(event_type: str) -> None:
    event = parse_workos(workos_body(event_type))
    assert event == UserEvent(
        kind="upsert",
        provider="workos",
        event_id="event_01",
        subject="user_01H",
        email="grace@example.com",
        display_name="Grace Hopper",
        updated_at=datetime(2024, 2, 3, 4, 5, 6, 789000, tzinfo=UTC),
        session_id=None,
        event_type=event_type,
    )


def test_workos_offset_timestamp_normalized_to_utc() -> None:
    event = parse_workos(workos_body(updated_at="2024-02-03T06:05:06+02:00"))
    assert event.updated_at == datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert event.updated_at is not None and event.updated_at.utcoffset() == timedelta(0)


def test_workos_deleted_and_ignored() -> None:
    deleted = parse_workos(workos_body("user.deleted"))
    assert (deleted.kind, deleted.subject, deleted.event_id, deleted.email) == (
        "delete",
        "user_01H",
        "event_01",
        None,
    )
    ignored = user_event(parse_workos(workos_body("dsync.user.created")))
    assert (ignored.kind, ignored.subject, ignored.event_id) == ("ignored", None, "event_01")


def test_workos_published_vector_body_is_ignored() -> None:
    body = (
        b'{"id":"event_01J44T8116Q5M0RYCFA6KWNXN9",'
        b'"data":{"id":"meow_123","name":"Meow Corp","object":"kitten","status":"cuteness",'
        b'"created_at":"2021-06-25T19:07:33.155Z","updated_at":"2021-06-25T19:07:33.155Z"},'
        b'"event":"kitten.created","created_at":"2021-06-25T19:07:33.155Z"}'
    )
    event = parse_workos(body)
    assert (event.kind, event.event_id, event.event_type) == (
        "ignored",
        "event_01J44T8116Q5M0RYCFA6KWNXN9",
        "kitten.created",
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            dumps({"event": "user.created", "data": {"id": "u", "updated_at": "2024-01-01T00:00:00Z"}}),
            id="no-id",
        ),
        pytest.param(dumps({"id": "e", "data": {"id": "u"}}), id="no-event"),
        pytest.param(dumps({"id": "e", "event": "user.created"}), id="no-data"),
        pytest.param(dumps({"type": "user.created", "id": "e", "data": {}}), id="clerk-shaped"),
        pytest.param(workos_body(id=None), id="data-id-null"),
        pytest.param(workos_body(updated_at=None), id="updated-at-null"),
        pytest.param(workos_body(updated_at="yesterday"), id="updated-at-word"),
        pytest.param(workos_body(updated_at=1700000000000), id="updated-at-number"),
        pytest.param(workos_body(updated_at="2024-01-01T00:00:00Z" + " " * 100), id="updated-at-long"),
        pytest.param(workos_body(email=["a@b"]), id="email-list"),
        pytest.param(workos_body("user.deleted", id=None), id="deleted-no-id"),
        pytest.param(workos_body("user.deleted", updated_at="nope"), id="deleted-bad-updated-at"),
    ],
)
def test_workos_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        parse_workos(body)


# --- Supabase ----------------------------------------------------------------------------------


def supabase_record(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": "5f0e6a0e-8d3c-4b7a-9f3e-2a1b0c9d8e7f",
        "aud": "authenticated",
        "role": "authenticated",
        "email": "linus@example.com",
        "encrypted_password": "$2a$10$secret-hash",
        "phone": "+15555550100",
        "confirmation_token": "tok",
        "raw_app_meta_data": {"provider": "email"},
        "raw_user_meta_data": {"full_name": "Linus Torvalds", "name": "linus"},
        "created_at": "2024-01-01 12:00:00.123456+00",
        "updated_at": "2024-01-02 13:14:15.654321+00",
        "deleted_at": None,
    }
    record.update(overrides)
    return record


def supabase_body(
    kind: str = "UPDATE", *, table: str = "users", schema: str = "auth", **overrides: Any
) -> bytes:
    record = supabase_record(**overrides)
    envelope: dict[str, Any] = {
        "type": kind,
        "table": table,
        "schema": schema,
        "record": record,
        "old_record": record,
    }
    if kind == "INSERT":
        envelope["old_record"] = None
    if kind == "DELETE":
        envelope["record"] = None
    return dumps(envelope)


@pytest.mark.parametrize("kind", ["INSERT", "UPDATE"])
def test_supabase_upsert(kind: str) -> None:
    event = parse_supabase(supabase_body(kind))
    assert event == UserEvent(
        kind="upsert",
        provider="supabase",
        event_id=None,
        subject="5f0e6a0e-8d3c-4b7a-9f3e-2a1b0c9d8e7f",
        email="linus@example.com",
        display_name="Linus Torvalds",
        updated_at=datetime(2024, 1, 2, 13, 14, 15, 654321, tzinfo=UTC),
        session_id=None,
        event_type=kind,
    )


@pytest.mark.parametrize(
    ("updated_at", "expected"),
    [
        ("2024-01-02 13:14:15.654321+00", datetime(2024, 1, 2, 13, 14, 15, 654321, tzinfo=UTC)),
        ("2024-01-02T13:14:15.654321+00:00", datetime(2024, 1, 2, 13, 14, 15, 654321, tzinfo=UTC)),
        ("2024-01-02T13:14:15Z", datetime(2024, 1, 2, 13, 14, 15, tzinfo=UTC)),
        ("2024-01-02 15:14:15+02", datetime(2024, 1, 2, 13, 14, 15, tzinfo=UTC)),
        ("2024-01-02 13:14:15", datetime(2024, 1, 2, 13, 14, 15, tzinfo=UTC)),
        (None, None),
    ],
)
def test_supabase_timestamp_formats(updated_at: str | None, expected: datetime | None) -> None:
    event = parse_supabase(supabase_body(updated_at=updated_at))
    assert event.updated_at == expected
    if event.updated_at is not None:
        assert event.updated_at.tzinfo is not None


@pytest.mark.parametrize(
    ("metadata", "name"),
    [
        ({"full_name": "Linus Torvalds"}, "Linus Torvalds"),
        ({"name": " linus "}, "linus"),
        ({"full_name": " ", "name": "linus"}, "linus"),
        ({"full_name": {"first": "x"}, "name": 5}, None),
        ({}, None),
        (None, None),
    ],
)
def test_supabase_display_name(metadata: dict[str, Any] | None, name: str | None) -> None:
    assert parse_supabase(supabase_body(raw_user_meta_data=metadata)).display_name == name


def test_supabase_keeps_nothing_sensitive() -> None:
    user = supabase_user(supabase_record())
    assert set(vars(user)) == {"subject", "email", "display_name", "updated_at", "deleted"}
    assert "secret-hash" not in repr(parse_supabase(supabase_body()))


def test_supabase_delete_uses_old_record() -> None:
    event = parse_supabase(supabase_body("DELETE"))
    assert (event.kind, event.subject, event.event_id, event.email) == (
        "delete",
        "5f0e6a0e-8d3c-4b7a-9f3e-2a1b0c9d8e7f",
        None,
        None,
    )


def test_supabase_soft_delete_is_a_delete() -> None:
    event = parse_supabase(supabase_body("UPDATE", deleted_at="2024-01-03 00:00:00+00"))
    assert (event.kind, event.subject) == ("delete", "5f0e6a0e-8d3c-4b7a-9f3e-2a1b0c9d8e7f")


@pytest.mark.parametrize("metadata_key", ["raw_user_meta_data", "user_metadata"])
def test_supabase_soft_delete_rule_is_in_the_shared_mapper(metadata_key: str) -> None:
    # The webhook row and the admin API user are read by the same rule, so reconcile agrees.
    assert supabase_user(supabase_record(deleted_at="2024-01-03 00:00:00+00"), metadata_key).deleted
    assert not supabase_user(supabase_record(), metadata_key).deleted


@pytest.mark.parametrize(
    ("table", "schema", "kind"),
    [
        ("profiles", "public", "INSERT"),
        ("users", "public", "UPDATE"),
        ("identities", "auth", "DELETE"),
        ("users", "auth", "TRUNCATE"),
    ],
)
def test_supabase_other_tables_and_types_ignored(table: str, schema: str, kind: str) -> None:
    event = parse_supabase(supabase_body(kind, table=table, schema=schema))
    assert (event.kind, event.subject, event.event_type) == ("ignored", None, kind)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(dumps({"table": "users", "schema": "auth", "record": supabase_record()}), id="no-type"),
        pytest.param(dumps({"type": "INSERT", "schema": "auth", "record": supabase_record()}), id="no-table"),
        pytest.param(
            dumps({"type": "INSERT", "table": "users", "record": supabase_record()}), id="no-schema"
        ),
        pytest.param(
            dumps({"type": "INSERT", "table": "users", "schema": "auth", "record": None}), id="record-null"
        ),
        pytest.param(
            dumps({"type": "DELETE", "table": "users", "schema": "auth", "old_record": None}), id="old-null"
        ),
        pytest.param(
            dumps({"type": "DELETE", "table": "users", "schema": "auth", "old_record": {"id": 1}}),
            id="old-id-int",
        ),
        pytest.param(supabase_body(id=None), id="id-null"),
        pytest.param(supabase_body(email=7), id="email-int"),
        pytest.param(supabase_body(updated_at="infinity"), id="updated-at-infinity"),
        pytest.param(supabase_body(updated_at=17), id="updated-at-int"),
        pytest.param(supabase_body(raw_user_meta_data="x"), id="metadata-string"),
        pytest.param(supabase_body(deleted_at=5), id="deleted-at-int"),
    ],
)
def test_supabase_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        parse_supabase(body)


# --- fuzz: only MalformedPayload, ever ---------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "user.created",
            "user.updated",
            "user.deleted",
            "session.revoked",
            "INSERT",
            "UPDATE",
            "DELETE",
            "auth",
            "users",
            "2024-01-01 12:00:00+00",
            "idn_1",
        ]
    ),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "event",
                    "id",
                    "data",
                    "record",
                    "old_record",
                    "table",
                    "schema",
                    "updated_at",
                    "email",
                    "email_addresses",
                    "primary_email_address_id",
                    "first_name",
                    "user_id",
                    "timestamp",
                    "raw_user_meta_data",
                    "deleted_at",
                    "x",
                ]
            ),
            children,
            max_size=8,
        )
    ),
    max_leaves=20,
)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse_all(body: bytes) -> None:
    for parse in (lambda b: parse_clerk(b, "msg"), parse_workos, parse_supabase):
        try:
            event = parse(body)
        except MalformedPayload:
            continue
        when = event.updated_at if isinstance(event, UserEvent) else event.occurred_at
        assert when is None or when.tzinfo is not None


@FUZZ
@given(body=st.binary(max_size=512))
def test_fuzz_parsers_arbitrary_bytes(body: bytes) -> None:
    parse_all(body)


@FUZZ
@given(value=json_values)
def test_fuzz_parsers_structured_json(value: Any) -> None:
    parse_all(orjson.dumps(value))


@FUZZ
@given(
    envelope=st.fixed_dictionaries(
        {"type": st.sampled_from(["user.created", "user.deleted", "session.ended"]), "data": json_values}
    )
)
def test_fuzz_clerk_envelope(envelope: dict[str, Any]) -> None:
    parse_all(orjson.dumps(envelope))
