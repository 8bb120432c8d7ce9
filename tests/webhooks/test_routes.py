"""The receivers over HTTP: every rejection is 401 with nothing written; statuses docs/api.md lists for webhooks."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from tests.conftest import AppFactory, client_for
from tests.kit.sql import SqlAdmin
from tests.webhooks.conftest import (
    CLERK,
    CLERK_SECRET,
    JSON,
    OLD_CLERK_SECRET,
    SUPABASE,
    SUPABASE_WHSEC,
    WEBHOOK_SETTINGS,
    WORKOS,
    WORKOS_SECRET,
    clerk_signed,
    clerk_user_event,
    ledger_count,
    supabase_event,
    supabase_signed,
    sw_signature,
    user_count,
    user_row,
    workos_signature,
    workos_signed,
    workos_user_event,
)

Headers = dict[str, str]
Delivery = tuple[str, bytes, Headers]
STRANGER_SECRET = "whsec_" + base64.b64encode(b"not-the-secret-anyone-configured").decode()


def flip_byte(body: bytes) -> bytes:
    index = body.index(b"example")
    return body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]


def without(headers: Headers, name: str) -> Headers:
    return {key: value for key, value in headers.items() if key != name}


def clerk_rejections() -> dict[str, Delivery]:
    payload = clerk_user_event("user_reject")
    body, good = clerk_signed(payload)
    now = int(time.time())
    valid_b64 = good["svix-signature"].split(",", 1)[1]

    def at(timestamp: int) -> Delivery:
        return (CLERK, *clerk_signed(payload, timestamp=timestamp))

    return {
        "clerk wrong secret": (CLERK, *clerk_signed(payload, secret=STRANGER_SECRET)),
        "clerk flipped byte": (CLERK, flip_byte(body), good),
        "clerk no svix-id": (CLERK, body, without(good, "svix-id")),
        "clerk no svix-timestamp": (CLERK, body, without(good, "svix-timestamp")),
        "clerk no svix-signature": (CLERK, body, without(good, "svix-signature")),
        "clerk 6 min old": at(now - 360),
        "clerk 6 min ahead": at(now + 360),
        "clerk garbage": (CLERK, body, {**good, "svix-signature": "garbage"}),
        "clerk v1,a,b": (CLERK, body, {**good, "svix-signature": "v1,a,b"}),
        "clerk not base64": (CLERK, body, {**good, "svix-signature": "v1,!!not*base64$$"}),
        "clerk only v2": (CLERK, body, {**good, "svix-signature": f"v2,{valid_b64}"}),
        "clerk other id": (CLERK, body, {**good, "svix-id": "msg_other"}),
    }


def workos_rejections() -> dict[str, Delivery]:
    payload = workos_user_event("user_01REJECT")
    body, good = workos_signed(payload)
    now_ms = time.time_ns() // 1_000_000
    t_ms = int(good["workos-signature"].split(",")[0].removeprefix("t="))
    signature = workos_signature(WORKOS_SECRET, t_ms, body)

    def at(t: int) -> Delivery:
        return (WORKOS, *workos_signed(payload, t_ms=t))

    return {
        "workos wrong secret": (WORKOS, *workos_signed(payload, secret="not-the-secret")),
        "workos flipped byte": (WORKOS, flip_byte(body), good),
        "workos no header": (WORKOS, body, without(good, "workos-signature")),
        "workos 4 min old": at(now_ms - 240_000),
        "workos 4 min ahead": at(now_ms + 240_000),
        "workos garbage": (WORKOS, body, {**good, "workos-signature": "garbage"}),
        "workos only t": (WORKOS, body, {**good, "workos-signature": f"t={t_ms}"}),
        "workos only v1": (WORKOS, body, {**good, "workos-signature": f"v1={signature}"}),
        "workos seconds not ms": (
            WORKOS,
            body,
            {
                **good,
                "workos-signature": f"t={t_ms // 1000}, v1={workos_signature(WORKOS_SECRET, t_ms // 1000, body)}",
            },
        ),
    }


def supabase_rejections() -> dict[str, Delivery]:
    payload = supabase_event("UPDATE", "00000000-0000-0000-0000-000000000001")
    body, good = supabase_signed(payload)
    return {
        "supabase wrong bearer": (SUPABASE, *supabase_signed(payload, bearer="wrong-secret")),
        "supabase bearer prefix only": (SUPABASE, *supabase_signed(payload, bearer="supabase-database")),
        "supabase no authorization": (SUPABASE, body, without(good, "authorization")),
        "supabase basic scheme": (SUPABASE, body, {**good, "authorization": "Basic c3VwYWJhc2U6c2VjcmV0"}),
        "supabase empty bearer": (SUPABASE, body, {**good, "authorization": "Bearer "}),
    }


def all_rejections() -> dict[str, Delivery]:
    # Signed when the test runs, not at collection: "4 min ahead" must not drift into the window
    # while a long suite runs.
    return {**clerk_rejections(), **workos_rejections(), **supabase_rejections()}


@pytest.mark.parametrize("name", sorted(all_rejections()))
async def test_rejected_delivery_is_401_and_writes_nothing(
    name: str, hooks: httpx.AsyncClient, clean_db: SqlAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    path, body, headers = all_rejections()[name]
    with caplog.at_level(logging.DEBUG, logger="routebook.webhooks"):
        response = await hooks.post(path, content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "The webhook signature is missing, invalid or stale."
    assert await ledger_count(clean_db) == 0
    assert await user_count(clean_db) == 0
    # The cause is logged at debug, and never a secret or a signature.
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "refused" in logged
    for secret in (CLERK_SECRET, OLD_CLERK_SECRET, WORKOS_SECRET, "supabase-database-webhook-shared-secret"):
        assert secret not in logged
    for value in headers.values():
        if len(value) > 20:
            assert value not in logged


async def test_valid_deliveries_of_each_provider_are_204(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    deliveries = [
        (CLERK, *clerk_signed(clerk_user_event("user_ok", kind="user.created"))),
        (WORKOS, *workos_signed(workos_user_event("user_01OK", kind="user.created"))),
        (SUPABASE, *supabase_signed(supabase_event("INSERT", "00000000-0000-0000-0000-00000000000a"))),
    ]
    for path, body, headers in deliveries:
        response = await hooks.post(path, content=body, headers=headers)
        assert response.status_code == 204, (path, response.text)
        assert response.content == b""
    assert await ledger_count(clean_db) == 2  # Supabase has no event id to record
    assert await user_count(clean_db) == 3


async def test_old_clerk_secret_still_verifies_during_rotation(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    body, headers = clerk_signed(clerk_user_event("user_rotated"), secret=OLD_CLERK_SECRET)
    assert (await hooks.post(CLERK, content=body, headers=headers)).status_code == 204
    assert await user_row(clean_db, "clerk", "user_rotated") is not None


async def test_one_good_signature_among_several_verifies(hooks: httpx.AsyncClient) -> None:
    body, headers = clerk_signed(clerk_user_event("user_multi"))
    stranger = sw_signature(STRANGER_SECRET, headers["svix-id"], int(headers["svix-timestamp"]), body)
    headers["svix-signature"] = f"v2,abc {stranger} {headers['svix-signature']}"
    assert (await hooks.post(CLERK, content=body, headers=headers)).status_code == 204


@pytest.mark.parametrize(
    ("path", "sign"),
    [(CLERK, clerk_signed), (WORKOS, workos_signed), (SUPABASE, supabase_signed)],
)
@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "user.updated", "data": ',
        b"[]",
        b'"just a string"',
        b"\xff\xfe not utf-8",
        b'{"type": "user.updated", "event": "user.updated", "id": "evt_1", "data": {}}',
        b'{"type": "UPDATE", "table": "users", "schema": "auth", "record": {"id": 5}}',
        b'{"type": 7, "event": ["x"], "id": {}, "data": null, "table": 1, "schema": null}',
        b"[" * 5000 + b"]" * 5000,
    ],
    ids=["truncated", "array", "string", "not-utf8", "missing-id", "wrong-type", "odd-types", "deep"],
)
async def test_valid_signature_over_malformed_payload_is_400(
    path: str,
    sign: Callable[[bytes], tuple[bytes, Headers]],
    body: bytes,
    hooks: httpx.AsyncClient,
    clean_db: SqlAdmin,
) -> None:
    signed_body, headers = sign(body)
    response = await hooks.post(path, content=signed_body, headers=headers)
    # Standard Webhooks signs text: a body that is not UTF-8 cannot carry a valid Svix signature.
    expected = 401 if path == CLERK and body.startswith(b"\xff") else 400
    assert response.status_code == expected, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert await ledger_count(clean_db) == 0
    assert await user_count(clean_db) == 0


async def test_ignored_event_types_are_204_and_not_recorded(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    deliveries = [
        (
            CLERK,
            *clerk_signed({"type": "organizationInvitation.created", "object": "event", "data": {"id": "i"}}),
        ),
        (CLERK, *clerk_signed({"type": "session.created", "data": {"id": "sess_1", "user_id": "user_1"}})),
        (WORKOS, *workos_signed({"id": "event_x", "event": "dsync.user.created", "data": {"id": "x"}})),
        (
            SUPABASE,
            *supabase_signed({"type": "INSERT", "table": "profiles", "schema": "public", "record": {}}),
        ),
        (SUPABASE, *supabase_signed({"type": "TRUNCATE", "table": "users", "schema": "auth"})),
    ]
    for path, body, headers in deliveries:
        assert (await hooks.post(path, content=body, headers=headers)).status_code == 204, path
    assert await ledger_count(clean_db) == 0
    assert await user_count(clean_db) == 0


async def test_body_over_webhook_max_body_bytes_is_413_declared_or_streamed(
    app_factory: AppFactory, clean_db: SqlAdmin
) -> None:
    payload = clerk_user_event("user_big")
    payload["data"]["padding"] = "x" * 4096
    body, headers = clerk_signed(payload)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    async with app_factory(**WEBHOOK_SETTINGS, webhook_max_body_bytes=2048) as app, client_for(app) as client:
        declared = await client.post(CLERK, content=body, headers=headers)
        streamed = await client.post(CLERK, content=chunks(), headers=headers)
    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert await user_count(clean_db) == 0


async def test_non_json_content_type_is_415(hooks: httpx.AsyncClient, clean_db: SqlAdmin) -> None:
    body, headers = clerk_signed(clerk_user_event("user_plain"))
    response = await hooks.post(CLERK, content=body, headers={**headers, "content-type": "text/plain"})
    assert response.status_code == 415
    assert await user_count(clean_db) == 0


@pytest.mark.parametrize("path", [CLERK, WORKOS, SUPABASE])
async def test_receiver_without_a_secret_is_503(
    path: str, app_factory: AppFactory, clean_db: SqlAdmin
) -> None:
    async with app_factory() as app, client_for(app) as client:
        response = await client.post(path, content=b"{}", headers={**JSON, "authorization": "Bearer x"})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert await ledger_count(clean_db) == 0


@pytest.mark.parametrize(
    ("path", "delivery"),
    [
        (CLERK, lambda: clerk_signed(clerk_user_event("user_down"))),
        (WORKOS, lambda: workos_signed(workos_user_event("user_01DOWN"))),
        (SUPABASE, lambda: supabase_signed(supabase_event("DELETE", "00000000-0000-0000-0000-0000000000d0"))),
    ],
)
async def test_database_down_is_503(
    path: str, delivery: Callable[[], tuple[bytes, Headers]], app_factory: AppFactory
) -> None:
    down = "postgresql+asyncpg://postgres@127.0.0.1:1/none"
    async with app_factory(**WEBHOOK_SETTINGS, database_url=down) as app, client_for(app) as client:
        body, headers = delivery()
        response = await client.post(path, content=body, headers=headers)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"


# --- Supabase with a Standard Webhooks secret ----------------------------------------------------


async def test_supabase_whsec_secret_verifies_comma_space_signatures(
    app_factory: AppFactory, clean_db: SqlAdmin
) -> None:
    subject = "00000000-0000-0000-0000-0000000000ab"
    body = supabase_signed(supabase_event("INSERT", subject))[0]
    timestamp = int(time.time())

    def headers(msg_id: str, signature: str, ts: int = timestamp) -> Headers:
        return {**JSON, "webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}

    good = sw_signature(SUPABASE_WHSEC, "msg_1", timestamp, body)
    stranger = sw_signature(STRANGER_SECRET, "msg_1", timestamp, body)
    async with app_factory(supabase_webhook_secret=SUPABASE_WHSEC) as app, client_for(app) as client:
        bearer = await client.post(
            SUPABASE, content=body, headers={**JSON, "authorization": f"Bearer {SUPABASE_WHSEC}"}
        )
        stale = await client.post(
            SUPABASE,
            content=body,
            headers=headers(
                "msg_1", sw_signature(SUPABASE_WHSEC, "msg_1", timestamp - 360, body), timestamp - 360
            ),
        )
        assert (bearer.status_code, stale.status_code) == (401, 401)
        assert await user_count(clean_db) == 0
        accepted = await client.post(SUPABASE, content=body, headers=headers("msg_1", f"{stranger}, {good}"))
    assert accepted.status_code == 204
    assert (await user_row(clean_db, "supabase", subject)) is not None
    assert await ledger_count(clean_db) == 0  # Supabase's webhook-id changes per retry: never a key


@pytest.mark.parametrize(
    ("path", "delivery"),
    [
        (CLERK, lambda: clerk_signed(clerk_user_event("user_\x00nul"))),
        (CLERK, lambda: clerk_signed(clerk_user_event("user_nul_mail", email="a\x00@example.com"))),
        (CLERK, lambda: clerk_signed(clerk_user_event("u" * 256))),
        (WORKOS, lambda: workos_signed(workos_user_event("user_01LONGID", event_id="event_" + "x" * 5000))),
        (SUPABASE, lambda: supabase_signed(supabase_event("DELETE", "x" * 300))),
    ],
    ids=["nul-subject", "nul-email", "long-subject", "huge-event-id", "long-supabase-id"],
)
async def test_signed_values_postgresql_cannot_store_are_400_not_503(
    path: str, delivery: Callable[[], tuple[bytes, Headers]], hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    body, headers = delivery()
    response = await hooks.post(path, content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert await ledger_count(clean_db) == 0


async def test_a_long_or_nul_display_name_is_cleaned_not_refused(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    body, headers = clerk_signed(clerk_user_event("user_named", first_name="A\x00da" + "a" * 500))
    assert (await hooks.post(CLERK, content=body, headers=headers)).status_code == 204
    row = await user_row(clean_db, "clerk", "user_named")
    assert row is not None and row.display_name is not None
    assert row.display_name.startswith("Adaa") and len(row.display_name) == 200
