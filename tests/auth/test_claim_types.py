"""Signed tokens whose claims hold any JSON value: verify() gives Claims or refuses, never crashes."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import pytest
import respx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.auth.keys import KeysUnavailable
from service.auth.tokens import Claims, InvalidToken
from tests.auth.conftest import VerifierFactory
from tests.kit import REMOVE, MockProvider
from tests.kit.forge import sign_raw

EXAMPLES = 150

# Every claim a provider profile or the verifier reads.
CLAIM_NAMES = [
    "role", "roles", "org_role", "o", "metadata", "app_metadata", "user_role", "permissions",
    "org_id", "sid", "session_id", "email", "azp", "sts", "is_anonymous",
    "exp", "nbf", "iat", "sub", "aud", "iss", "v",
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**400, -(10**400), 2**63, 253_402_300_800])
    # NaN and ±Infinity included: Python's json (and so PyJWT) reads them.
    | st.floats()
    | st.floats(min_value=0, max_value=4e9)
    | st.text(max_size=20)
    | st.sampled_from(["", "admin", "org:admin", "anon", "service_role", "pending", "a, b", "9999999999"])
    # JSON may carry what UTF-8 cannot (a lone surrogate) and what PostgreSQL text cannot (NUL).
    | st.sampled_from(["\ud800", "admin\udfff", "a\x00b"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["id", "rol", "per", "role", "roles"]) | st.text(max_size=5), children, max_size=3
        )
    ),
    max_leaves=8,
)
claim_changes = st.dictionaries(st.sampled_from(CLAIM_NAMES), json_values | st.just(REMOVE), max_size=4)


def encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


PROVIDERS: dict[str, Callable[[], MockProvider]] = {
    "clerk": MockProvider.clerk,
    "supabase": MockProvider.supabase,
    "workos": MockProvider.workos,
}


@pytest.mark.parametrize("kind", list(PROVIDERS))
async def test_any_claim_value_is_accepted_or_refused(
    kind: str, router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    provider = PROVIDERS[kind]()
    provider.mock(router)
    verifier = make_verifier(provider)
    loop = asyncio.get_running_loop()
    seen: set[str] = set()

    def outcome(changes: dict[str, Any]) -> Claims | Exception:
        payload = provider.claims("user_1")
        for name, value in changes.items():
            if value is REMOVE:
                payload.pop(name, None)
            else:
                payload[name] = value
        key = provider.key
        # sign_raw: PyJWT's encoder refuses some of these claims (a list `iss`, for one).
        token = sign_raw(payload, key.private, key.alg, {"kid": key.kid, "typ": "JWT"})
        future = asyncio.run_coroutine_threadsafe(verifier.verify(token), loop)
        try:
            return future.result(timeout=30)
        except Exception as exc:
            return exc

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(changes=claim_changes)
    @example(changes={"role": ["authenticated"]})
    @example(changes={"role": {"name": "admin"}})
    @example(changes={"exp": 10**400})
    @example(changes={"exp": math.nan})
    @example(changes={"iat": 10**400})
    @example(changes={"iat": math.inf})
    @example(changes={"metadata": {"roles": ["admin", "\ud800"]}})
    @example(changes={"app_metadata": {"role": "\ud800"}})
    @example(changes={"role": "\ud800", "org_id": "org_\udfff"})
    @example(changes={"o": {"id": "org_1", "per": "read,\ud800"}})
    def check(changes: dict[str, Any]) -> None:
        result = outcome(changes)
        seen.add(type(result).__name__)
        assert isinstance(result, Claims | InvalidToken | KeysUnavailable), (changes, repr(result))
        if isinstance(result, Claims):
            assert isinstance(result.subject, str)
            assert math.isfinite(result.expires_at)
            # Everything /users/me answers with encodes: the response cannot fail after the fact.
            org = result.org
            shown = [result.subject, result.email or "", *result.roles, *result.permissions]
            shown += [] if org is None else [org.id or "", org.role or "", *org.permissions]
            assert all(encodes(value) for value in shown), (changes, result)
            assert result.issued_at is None or math.isfinite(result.issued_at)

    await asyncio.to_thread(check)
    # The fuzz reached both ends: tokens accepted and tokens refused.
    assert {"Claims", "InvalidToken"} <= seen, seen
