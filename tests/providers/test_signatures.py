"""Webhook signature verification over raw bytes: published vectors, rejections, fuzz."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.providers.clerk import verify_clerk
from service.providers.supabase import is_standard_webhooks_secret, verify_supabase
from service.providers.webhook_auth import SignatureInvalid, split_secrets
from service.providers.workos import verify_workos

# Standard Webhooks / Svix published vector.
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TS = 1614265330
SW_BODY = b'{"test": 2432232314}'
SW_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

# Svix Rust test-suite vector.
RUST_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
RUST_ID = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"
RUST_TS = 1649367553
RUST_BODY = b'{"email":"test@example.com","username":"test_user"}'
RUST_SIG = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="

# WorkOS (workos-python tests) vector.
WORKOS_SECRET = "2sAZJlbjP8Ce3rwkKEv2GfKef"
WORKOS_T = 1722443701539
WORKOS_BODY = (
    b'{"id":"event_01J44T8116Q5M0RYCFA6KWNXN9","data":{"id":"meow_123","name":"Meow Corp","object":"kitten",'
    b'"status":"cuteness","created_at":"2021-06-25T19:07:33.155Z","updated_at":"2021-06-25T19:07:33.155Z"},'
    b'"event":"kitten.created","created_at":"2021-06-25T19:07:33.155Z"}'
)
WORKOS_V1 = "f82f88dd60d5bc8a803686a27f83ce148b8c37c54490c52b77d00d62da891f1b"
WORKOS_HEADER = f"t={WORKOS_T}, v1={WORKOS_V1}"

OTHER_SECRET = "whsec_" + base64.b64encode(b"another-32-byte-key-for-tests!!!").decode()


def sw_sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Independent Standard Webhooks signer (not the code under test)."""
    key = base64.b64decode(secret.removeprefix("v1,").removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def workos_sign(secret: str, t: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def svix_headers(msg_id: str = SW_ID, ts: int = SW_TS, sig: str = SW_SIG) -> dict[str, str]:
    return {"svix-id": msg_id, "svix-timestamp": str(ts), "svix-signature": sig}


def webhook_headers(msg_id: str = SW_ID, ts: int = SW_TS, sig: str = SW_SIG) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}


# --- published vectors -------------------------------------------------------------------------


def test_standard_webhooks_vector_verifies_for_clerk() -> None:
    assert verify_clerk(svix_headers(), SW_BODY, [SW_SECRET], now=SW_TS) == SW_ID


def test_reserialized_body_does_not_verify() -> None:
    minified = b'{"test":2432232314}'
    with pytest.raises(SignatureInvalid):
        verify_clerk(svix_headers(), minified, [SW_SECRET], now=SW_TS)
    # ...and the published signature of the minified body differs, proving the point.
    assert sw_sign(SW_SECRET, SW_ID, SW_TS, minified) == "v1,Vif40peJBP7Iyl0XGmu61n4MwdrcHov5CFREBpE0svs="


def test_independent_signer_matches_vector() -> None:
    assert sw_sign(SW_SECRET, SW_ID, SW_TS, SW_BODY) == SW_SIG


def test_svix_rust_vector_verifies() -> None:
    headers = svix_headers(RUST_ID, RUST_TS, RUST_SIG)
    assert verify_clerk(headers, RUST_BODY, [RUST_SECRET], now=RUST_TS) == RUST_ID


def test_standard_webhooks_vector_verifies_for_supabase_with_dashboard_secret() -> None:
    for secret in (SW_SECRET, "v1," + SW_SECRET):
        assert verify_supabase(webhook_headers(), SW_BODY, secret, now=SW_TS) == SW_ID


def test_workos_vector_verifies() -> None:
    verify_workos(WORKOS_HEADER, WORKOS_BODY, WORKOS_SECRET, now_ms=WORKOS_T)
    assert workos_sign(WORKOS_SECRET, WORKOS_T, WORKOS_BODY) == WORKOS_V1


def test_workos_vector_rejected_with_real_clock() -> None:
    with pytest.raises(SignatureInvalid):
        verify_workos(WORKOS_HEADER, WORKOS_BODY, WORKOS_SECRET)


def test_standard_webhooks_vector_rejected_with_real_clock() -> None:
    with pytest.raises(SignatureInvalid):
        verify_clerk(svix_headers(), SW_BODY, [SW_SECRET])


# --- Clerk (Svix) ------------------------------------------------------------------------------


def test_clerk_header_names_are_case_insensitive() -> None:
    headers = {"Svix-Id": SW_ID, "SVIX-TIMESTAMP": str(SW_TS), "Svix-Signature": SW_SIG}
    assert verify_clerk(headers, SW_BODY, [SW_SECRET], now=SW_TS) == SW_ID


def test_clerk_rotation_second_secret_verifies() -> None:
    secrets = split_secrets(f"{OTHER_SECRET}  {SW_SECRET}")
    assert secrets == [OTHER_SECRET, SW_SECRET]
    assert verify_clerk(svix_headers(), SW_BODY, secrets, now=SW_TS) == SW_ID


def test_clerk_any_of_several_signatures_verifies() -> None:
    sig = f"v1,{base64.b64encode(b'x' * 32).decode()} {SW_SIG}"
    assert verify_clerk(svix_headers(sig=sig), SW_BODY, [SW_SECRET], now=SW_TS) == SW_ID


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_clerk_timestamp_within_five_minutes_verifies(offset: int) -> None:
    assert verify_clerk(svix_headers(), SW_BODY, [SW_SECRET], now=SW_TS + offset) == SW_ID


def flipped(body: bytes) -> bytes:
    return body[:5] + bytes([body[5] ^ 0x01]) + body[6:]


@pytest.mark.parametrize(
    ("headers", "body", "secrets", "now"),
    [
        pytest.param(svix_headers(), SW_BODY, [OTHER_SECRET], SW_TS, id="wrong-secret"),
        pytest.param(svix_headers(), flipped(SW_BODY), [SW_SECRET], SW_TS, id="flipped-byte"),
        pytest.param(svix_headers(), SW_BODY, [SW_SECRET], SW_TS + 360, id="6-min-old"),
        pytest.param(svix_headers(), SW_BODY, [SW_SECRET], SW_TS - 360, id="6-min-ahead"),
        pytest.param(svix_headers(sig="garbage"), SW_BODY, [SW_SECRET], SW_TS, id="sig-garbage"),
        pytest.param(svix_headers(sig="v1,a,b"), SW_BODY, [SW_SECRET], SW_TS, id="sig-v1-a-b"),
        pytest.param(svix_headers(sig="v1,!!!not base64!!!"), SW_BODY, [SW_SECRET], SW_TS, id="sig-not-b64"),
        pytest.param(svix_headers(sig="v1,abc"), SW_BODY, [SW_SECRET], SW_TS, id="sig-bad-padding"),
        pytest.param(svix_headers(sig="v2" + SW_SIG[2:]), SW_BODY, [SW_SECRET], SW_TS, id="sig-only-v2"),
        pytest.param(svix_headers(sig="v1,"), SW_BODY, [SW_SECRET], SW_TS, id="sig-empty-v1"),
        pytest.param(svix_headers(sig=","), SW_BODY, [SW_SECRET], SW_TS, id="sig-comma"),
        pytest.param(svix_headers(msg_id="msg_other"), SW_BODY, [SW_SECRET], SW_TS, id="other-id"),
        pytest.param(svix_headers(msg_id="msg_\u00e9"), SW_BODY, [SW_SECRET], SW_TS, id="non-ascii-id"),
        pytest.param(svix_headers(), SW_BODY, [], SW_TS, id="no-secret"),
        pytest.param(svix_headers(), SW_BODY, ["whsec_"], SW_TS, id="empty-secret"),
        pytest.param(svix_headers(), SW_BODY, ["whsec_@@@"], SW_TS, id="undecodable-secret"),
        pytest.param(svix_headers(), b"\xff" + SW_BODY, [SW_SECRET], SW_TS, id="non-utf8-body"),
        pytest.param(
            {**svix_headers(), "svix-timestamp": "1614265330.0"}, SW_BODY, [SW_SECRET], SW_TS, id="float-ts"
        ),
        pytest.param({**svix_headers(), "svix-timestamp": "nan"}, SW_BODY, [SW_SECRET], SW_TS, id="nan-ts"),
        pytest.param(
            {**svix_headers(), "svix-timestamp": "9" * 40}, SW_BODY, [SW_SECRET], SW_TS, id="huge-ts"
        ),
        pytest.param(
            {"webhook-id": SW_ID, "webhook-timestamp": str(SW_TS), "webhook-signature": SW_SIG},
            SW_BODY,
            [SW_SECRET],
            SW_TS,
            id="webhook-names-not-svix",
        ),
    ],
)
def test_clerk_rejections(headers: dict[str, str], body: bytes, secrets: list[str], now: float) -> None:
    with pytest.raises(SignatureInvalid):
        verify_clerk(headers, body, secrets, now=now)


@pytest.mark.parametrize("missing", ["svix-id", "svix-timestamp", "svix-signature"])
def test_clerk_each_header_missing(missing: str) -> None:
    headers = svix_headers()
    del headers[missing]
    with pytest.raises(SignatureInvalid, match=missing):
        verify_clerk(headers, SW_BODY, [SW_SECRET], now=SW_TS)


@pytest.mark.parametrize("now", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_clock_never_disables_the_window(now: float) -> None:
    with pytest.raises(SignatureInvalid):
        verify_clerk(svix_headers(), SW_BODY, [SW_SECRET], now=now)


def test_cause_never_contains_the_secret() -> None:
    bad_secret = "whsec_@@@"
    for secrets in ([OTHER_SECRET], [bad_secret]):
        with pytest.raises(SignatureInvalid) as caught:
            verify_clerk(svix_headers(), SW_BODY, secrets, now=SW_TS)
        assert secrets[0] not in caught.value.cause
        assert secrets[0] not in str(caught.value)


# --- WorkOS ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        WORKOS_HEADER,
        f"v1={WORKOS_V1}, t={WORKOS_T}",
        f"t={WORKOS_T},v1={WORKOS_V1}",
        f"  t = {WORKOS_T} ,\tv1 = {WORKOS_V1}  ",
        f"t={WORKOS_T}, v1={WORKOS_V1.upper()}",
    ],
)
def test_workos_header_whitespace_order_case(header: str) -> None:
    verify_workos(header, WORKOS_BODY, WORKOS_SECRET, now_ms=WORKOS_T)


@pytest.mark.parametrize("offset_s", [-180, 180])
def test_workos_edge_of_tolerance_verifies(offset_s: int) -> None:
    verify_workos(WORKOS_HEADER, WORKOS_BODY, WORKOS_SECRET, now_ms=WORKOS_T + offset_s * 1000)


@pytest.mark.parametrize(
    ("header", "body", "secret", "now_ms"),
    [
        pytest.param(WORKOS_HEADER, WORKOS_BODY, "wrong-secret", WORKOS_T, id="wrong-secret"),
        pytest.param(WORKOS_HEADER, flipped(WORKOS_BODY), WORKOS_SECRET, WORKOS_T, id="flipped-byte"),
        pytest.param(WORKOS_HEADER, WORKOS_BODY, WORKOS_SECRET, WORKOS_T + 240_000, id="4-min-old"),
        pytest.param(WORKOS_HEADER, WORKOS_BODY, WORKOS_SECRET, WORKOS_T - 240_000, id="4-min-ahead"),
        pytest.param(None, WORKOS_BODY, WORKOS_SECRET, WORKOS_T, id="missing"),
        pytest.param("", WORKOS_BODY, WORKOS_SECRET, WORKOS_T, id="empty"),
        pytest.param(f"t={WORKOS_T}", WORKOS_BODY, WORKOS_SECRET, WORKOS_T, id="only-t"),
        pytest.param(f"v1={WORKOS_V1}", WORKOS_BODY, WORKOS_SECRET, WORKOS_T, id="only-v1"),
        pytest.param(f"{WORKOS_HEADER}, t={WORKOS_T}", WORKOS_BODY, WORKOS_SECRET, WORKOS_T, id="dup-t"),
        pytest.param(f"{WORKOS_HEADER}, v1={WORKOS_V1}", WORKOS_BODY, WORKOS_SECRET, WORKOS_T, id="dup-v1"),
        pytest.param(f"t=abc, v1={WORKOS_V1}", WORKOS_BODY, WORKOS_SECRET, WORKOS_T, id="non-numeric-t"),
        pytest.param(f"t=-1, v1={WORKOS_V1}", WORKOS_BODY, WORKOS_SECRET, WORKOS_T, id="negative-t"),
        pytest.param(f"t=١٢٣, v1={WORKOS_V1}", WORKOS_BODY, WORKOS_SECRET, WORKOS_T, id="unicode-digits"),
        pytest.param(f"t={WORKOS_T}, v1=xyz", WORKOS_BODY, WORKOS_SECRET, WORKOS_T, id="non-hex-v1"),
        pytest.param(
            f"t={WORKOS_T}, v1={WORKOS_V1[:-2]}", WORKOS_BODY, WORKOS_SECRET, WORKOS_T, id="short-v1"
        ),
        pytest.param(f"t={WORKOS_T}, v1={'é' * 64}", WORKOS_BODY, WORKOS_SECRET, WORKOS_T, id="non-ascii-v1"),
        pytest.param(f"t={WORKOS_T}; v1={WORKOS_V1}", WORKOS_BODY, WORKOS_SECRET, WORKOS_T, id="semicolon"),
        pytest.param("garbage", WORKOS_BODY, WORKOS_SECRET, WORKOS_T, id="garbage"),
        pytest.param(WORKOS_HEADER, WORKOS_BODY, "", WORKOS_T, id="no-secret"),
    ],
)
def test_workos_rejections(header: str | None, body: bytes, secret: str, now_ms: int) -> None:
    with pytest.raises(SignatureInvalid):
        verify_workos(header, body, secret, now_ms=now_ms)


def test_workos_reserialized_body_does_not_verify() -> None:
    reserialized = WORKOS_BODY.replace(b'","', b'", "')
    with pytest.raises(SignatureInvalid):
        verify_workos(WORKOS_HEADER, reserialized, WORKOS_SECRET, now_ms=WORKOS_T)


# --- Supabase ----------------------------------------------------------------------------------


def test_is_standard_webhooks_secret() -> None:
    assert is_standard_webhooks_secret("whsec_abc")
    assert is_standard_webhooks_secret("v1,whsec_abc")
    assert not is_standard_webhooks_secret("plain-shared-secret")
    assert not is_standard_webhooks_secret("v1,abc")


@pytest.mark.parametrize("separator", [", ", " ", ",  "])
def test_supabase_multiple_signatures_any_separator(separator: str) -> None:
    other = sw_sign(OTHER_SECRET, SW_ID, SW_TS, SW_BODY)
    for header in (f"{other}{separator}{SW_SIG}", f"{SW_SIG}{separator}{other}"):
        assert verify_supabase(webhook_headers(sig=header), SW_BODY, "v1," + SW_SECRET, now=SW_TS) == SW_ID


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_supabase_standard_webhooks_header_missing(missing: str) -> None:
    headers = webhook_headers()
    del headers[missing]
    with pytest.raises(SignatureInvalid):
        verify_supabase(headers, SW_BODY, SW_SECRET, now=SW_TS)


@pytest.mark.parametrize(
    ("headers", "now"),
    [
        pytest.param(webhook_headers(), SW_TS + 360, id="6-min-old"),
        pytest.param(webhook_headers(), SW_TS - 360, id="6-min-ahead"),
        pytest.param(webhook_headers(sig="garbage"), SW_TS, id="garbage"),
        pytest.param(webhook_headers(sig="v1,a,b"), SW_TS, id="v1-a-b"),
        pytest.param(webhook_headers(sig="v1,@@@@"), SW_TS, id="non-b64"),
        pytest.param(webhook_headers(sig="v2" + SW_SIG[2:]), SW_TS, id="only-v2"),
        pytest.param({"authorization": f"Bearer {SW_SECRET}"}, SW_TS, id="bearer-instead-of-signature"),
    ],
)
def test_supabase_standard_webhooks_rejections(headers: dict[str, str], now: float) -> None:
    with pytest.raises(SignatureInvalid):
        verify_supabase(headers, SW_BODY, "v1," + SW_SECRET, now=now)


def test_supabase_wrong_secret_and_flipped_byte() -> None:
    with pytest.raises(SignatureInvalid):
        verify_supabase(webhook_headers(), SW_BODY, OTHER_SECRET, now=SW_TS)
    with pytest.raises(SignatureInvalid):
        verify_supabase(webhook_headers(), flipped(SW_BODY), SW_SECRET, now=SW_TS)


BEARER = "a-long-shared-secret-set-in-the-trigger"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {BEARER}"},
        {"authorization": f"bearer {BEARER}"},
        {"AUTHORIZATION": f"Bearer  {BEARER} "},
    ],
)
def test_supabase_bearer_accepted(headers: dict[str, str]) -> None:
    assert verify_supabase(headers, b"anything", BEARER) is None


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Authorization": "Bearer wrong"}, id="wrong"),
        pytest.param({"Authorization": f"Bearer {BEARER}x"}, id="longer"),
        pytest.param({"Authorization": f"Bearer {BEARER[:-1]}"}, id="shorter"),
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Bearer"}, id="empty-bearer"),
        pytest.param({"Authorization": "Bearer "}, id="blank-bearer"),
        pytest.param({"Authorization": BEARER}, id="no-scheme"),
        pytest.param({"Authorization": f"Basic {BEARER}"}, id="basic"),
        pytest.param({"Authorization": "Bearer \ud800"}, id="lone-surrogate"),
        pytest.param({"Authorization": "Bearer é"}, id="non-ascii"),
    ],
)
def test_supabase_bearer_rejections(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureInvalid):
        verify_supabase(headers, b"{}", BEARER)


def test_supabase_without_secret_rejects() -> None:
    with pytest.raises(SignatureInvalid):
        verify_supabase({"Authorization": "Bearer "}, b"{}", "")


# --- fuzz: only SignatureInvalid, ever ---------------------------------------------------------

header_values = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["", " ", ",", "v1,", "v1,a,b", "garbage", "t=", "v1=", "t=1,v1=2", "Bearer x"]),
    st.just(SW_SIG),
)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(
    headers=st.dictionaries(
        st.sampled_from(["svix-id", "svix-timestamp", "svix-signature", "Svix-Id", "other"]), header_values
    ),
    body=st.binary(max_size=256),
    now=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.just(float(SW_TS))),
)
def test_fuzz_verify_clerk(headers: dict[str, str], body: bytes, now: float | None) -> None:
    with contextlib.suppress(SignatureInvalid):
        verify_clerk(headers, body, [SW_SECRET, "whsec_@@@"], now=now)


@FUZZ
@given(
    header=st.one_of(st.none(), header_values, st.just(WORKOS_HEADER)),
    body=st.binary(max_size=256),
    now_ms=st.one_of(st.none(), st.integers(min_value=-(2**70), max_value=2**70), st.just(WORKOS_T)),
)
def test_fuzz_verify_workos(header: str | None, body: bytes, now_ms: int | None) -> None:
    with contextlib.suppress(SignatureInvalid):
        verify_workos(header, body, WORKOS_SECRET, now_ms=now_ms)


@FUZZ
@given(
    headers=st.dictionaries(
        st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature", "authorization", "x"]),
        header_values,
    ),
    body=st.binary(max_size=256),
    secret=st.one_of(st.text(max_size=40), st.sampled_from([SW_SECRET, "v1," + SW_SECRET, "whsec_", BEARER])),
)
def test_fuzz_verify_supabase(headers: dict[str, str], body: bytes, secret: str) -> None:
    with contextlib.suppress(SignatureInvalid):
        verify_supabase(headers, body, secret, now=SW_TS)
