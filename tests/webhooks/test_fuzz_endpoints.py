"""Hypothesis against the three HTTP endpoints: no body or header, signed or not, yields a 5xx."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import client_for
from tests.kit.sql import SqlAdmin
from tests.webhooks.conftest import (
    CLERK,
    SUPABASE,
    WORKOS,
    clerk_deleted_event,
    clerk_session_event,
    clerk_signed,
    clerk_user_event,
    supabase_event,
    supabase_signed,
    workos_signed,
    workos_user_event,
)
from tests.webhooks.test_workspace_hooks import (
    clerk_membership_event,
    clerk_org_event,
    workos_membership_event,
    workos_org_event,
)

# With the database up, every answer is the sender's doing: never a 5xx.
ALLOWED = {204, 400, 401, 413, 415}
EXAMPLES = 250

Signer = Callable[[bytes], tuple[bytes, dict[str, str]]]
SIGNERS: dict[str, Signer] = {CLERK: clerk_signed, WORKOS: workos_signed, SUPABASE: supabase_signed}
HEADER_NAMES = [
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "workos-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "authorization",
    "content-type",
    "content-length",
]
TEMPLATES: list[dict[str, Any]] = [
    clerk_user_event("user_fuzz", kind="user.created"),
    clerk_deleted_event("user_fuzz"),
    clerk_session_event("sess_fuzz", "user_fuzz"),
    workos_user_event("user_01FUZZ"),
    workos_user_event("user_01FUZZ", kind="user.deleted"),
    supabase_event("UPDATE", "00000000-0000-0000-0000-00000000f022"),
    supabase_event("DELETE", "00000000-0000-0000-0000-00000000f022"),
    clerk_org_event("organization.updated", "org_fuzz"),
    clerk_org_event("organization.deleted", "org_fuzz"),
    clerk_membership_event("organizationMembership.updated", "user_fuzz", "org_fuzz"),
    workos_org_event("organization.created", "org_01FUZZ"),
    workos_membership_event("organization_membership.updated", "user_01FUZZ", "org_01FUZZ"),
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    # orjson writes 64-bit integers only; bigger numbers come in the raw EDGE_BODIES below.
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["", "\x00", "a" * 300, "x@y", "2024-05-01T00:00:00Z", "user.deleted", "v1,a"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    return found


def _mutated(template: dict[str, Any], path: tuple[str, ...], value: Any) -> bytes:
    copy = orjson.loads(orjson.dumps(template))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return orjson.dumps(copy)


@st.composite
def shaped_bodies(draw: st.DrawFn) -> bytes:
    """A provider-shaped event with one field replaced: reaches the parser and the handlers."""
    template = draw(st.sampled_from(TEMPLATES))
    path = draw(st.sampled_from(_paths(template)))
    return _mutated(template, path, draw(json_values))


EDGE_BODIES = [
    b'{"type": "user.updated", "data": {"id": "u", "updated_at": 1e400}}',
    b'{"type": "user.updated", "data": {"id": "u", "updated_at": 123456789012345678901234567890}}',
    b'{"object": "event", "id": "e", "event": "user.updated", "data": {"id": "u", "updated_at": "+99999-01-01"}}',
    b'{"type": "UPDATE", "table": "users", "schema": "auth", "record": {"id": "u", "updated_at": "0001-01-01T00:00:00-23:59"}}',
    b'{"type": "user.deleted", "data": {"id": "u"}, "timestamp": -99999999999999999}',
]

bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(orjson.dumps),
    shaped_bodies(),
    st.sampled_from([orjson.dumps(t) for t in TEMPLATES] + EDGE_BODIES),
)
header_values = st.one_of(
    st.binary(max_size=80).filter(lambda b: b"\r" not in b and b"\n" not in b),
    st.sampled_from([b"garbage", b"v1,a,b", b"v1,!!", b"t=1, v1=zz", b"Bearer ", b"0", b"99999999999999"]),
)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[str, bytes, dict[str, Any]]:
    path = draw(st.sampled_from(list(SIGNERS)))
    body = draw(bodies)
    mode = draw(st.sampled_from(["signed", "signed, one header replaced", "random"]))
    headers: dict[str, Any]
    if mode == "random":
        headers = {"content-type": "application/json"}
        headers.update(draw(st.dictionaries(st.sampled_from(HEADER_NAMES), header_values, max_size=5)))
    else:
        body, headers = SIGNERS[path](body)
        if mode != "signed":
            headers[draw(st.sampled_from(HEADER_NAMES))] = draw(header_values)
    return path, body, headers


async def test_no_input_yields_a_server_error(hooks_app: FastAPI, clean_db: SqlAdmin) -> None:
    loop = asyncio.get_running_loop()
    seen: dict[int, int] = {}
    async with client_for(hooks_app) as client:

        def post(path: str, body: bytes, headers: dict[str, Any]) -> httpx.Response:
            # The app lives on the test's event loop; Hypothesis drives it from this worker thread.
            request = client.post(path, content=body, headers=headers)
            return asyncio.run_coroutine_threadsafe(request, loop).result(timeout=30)

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(delivery=deliveries())
        def check(delivery: tuple[str, bytes, dict[str, Any]]) -> None:
            response = post(*delivery)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code in ALLOWED, (delivery, response.status_code, response.text)

        await asyncio.to_thread(check)
    # The fuzz reached every stage: refused, malformed, and applied.
    assert {204, 400, 401} <= set(seen), seen


async def test_edge_bodies_signed_for_every_endpoint(hooks: httpx.AsyncClient) -> None:
    for path, sign in SIGNERS.items():
        for edge in EDGE_BODIES:
            body, headers = sign(edge)
            response = await hooks.post(path, content=body, headers=headers)
            assert response.status_code in {204, 400}, (path, edge, response.text)
