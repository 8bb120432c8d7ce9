"""Large and awkward JSON documents: they come back JSON-equal, or are refused with 422 — never 500."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.planning.conftest import Caller, encode


async def new_session(caller: Caller) -> str:
    return str((await caller.call("POST", "/sessions", {"name": "payloads"})).json()["id"])


async def round_trip(caller: Caller, session_id: str, request: Any) -> tuple[int, Any]:
    created = await caller.call(
        "POST", f"/sessions/{session_id}/scenarios", {"name": "doc", "request": request}
    )
    assert created.status_code in (201, 422), created.text
    if created.status_code == 422:
        return 422, None
    read = await caller.call("GET", f"/scenarios/{created.json()['id']}")
    assert read.status_code == 200
    return 200, json_value(read.content)["request"]


def json_value(raw: bytes) -> Any:
    """JSON-equal means equal numbers, however written: JSONB stores numerics and writes them out
    in full (1e3 reads back as 1000), and the standard library keeps big integers exact."""
    return json.loads(raw, parse_float=Decimal)


def sent(value: Any) -> Any:
    return json_value(encode(value))


def big_request(target_bytes: int) -> dict[str, Any]:
    rnd = random.Random(7)
    n = int((target_bytes / 5.8) ** 0.5)
    return {
        "stops": [
            {"id": f"stop-{i}", "lat": rnd.uniform(-90, 90), "lon": rnd.uniform(-180, 180)} for i in range(n)
        ],
        "durations": [[rnd.randint(0, 99999) for _ in range(n)] for _ in range(n)],
    }


async def test_a_5_mb_request_survives_and_the_original_stays_frozen(alice: Caller) -> None:
    session_id = await new_session(alice)
    request = big_request(5_000_000)
    body = encode({"name": "big", "request": request})
    assert len(body) >= 5_000_000
    created = await alice.call("POST", f"/sessions/{session_id}/scenarios", body)
    assert created.status_code == 201, created.text
    assert "request" not in created.json()  # writes answer with the summary, not the megabytes
    scenario_id = created.json()["id"]

    read = await alice.call("GET", f"/scenarios/{scenario_id}")
    assert read.status_code == 200 and read.headers["content-type"] == "application/json"
    assert int(read.headers["content-length"]) == len(read.content)
    assert json.loads(read.content)["request"] == request

    patched = await alice.call(
        "PATCH", f"/scenarios/{scenario_id}", {"request": {"stops": [], "edited": True}}
    )
    assert patched.status_code == 200
    assert (await alice.call("GET", f"/scenarios/{scenario_id}")).json()["request"] == {
        "stops": [],
        "edited": True,
    }
    assert json.loads((await alice.call("GET", f"/scenarios/{scenario_id}/original")).content) == request

    reset = await alice.call("POST", f"/scenarios/{scenario_id}/reset")
    assert reset.status_code == 200
    assert json.loads((await alice.call("GET", f"/scenarios/{scenario_id}")).content)["request"] == request
    assert json.loads((await alice.call("GET", f"/scenarios/{scenario_id}/original")).content) == request


async def test_solution_payloads_round_trip(alice: Caller) -> None:
    session_id = await new_session(alice)
    scenario = await alice.call("POST", f"/sessions/{session_id}/scenarios", {"name": "s", "request": {}})
    payload = big_request(1_000_000)
    created = await alice.call(
        "POST", f"/scenarios/{scenario.json()['id']}/solutions", {"status": "succeeded", "payload": payload}
    )
    assert created.status_code == 201, created.text
    read = await alice.call("GET", f"/solutions/{created.json()['id']}")
    assert json.loads(read.content)["payload"] == payload
    bare = await alice.call("POST", f"/scenarios/{scenario.json()['id']}/solutions", {"status": "succeeded"})
    assert (await alice.call("GET", f"/solutions/{bare.json()['id']}")).json()["payload"] is None


def nested(depth: int) -> dict[str, Any]:
    value: Any = {"leaf": [1, "x"]}
    for level in range(depth - 1):
        value = {"level": level, "next": value} if level % 2 else {"next": [value]}
    return value


@pytest.mark.parametrize(
    "request_document",
    [
        {
            "name": "Zürich → 東京 🚚",
            "rtl": "مرحبا",
            "combining": "e\u0301",
            "zwj": "👩‍👩‍👧",
            "astral": "\U0001f600",
        },
        {"max_u64": 2**64 - 1, "past_u64": 2**64, "huge": 2**200, "negative": -(2**100), "tiny": -(2**63)},
        {"floats": [0.1, -2.5e-7, 1.7976931348623157e308], "flags": [True, False, None], "empty": [{}, []]},
        {"\u00e9": "composed", "e\u0301": "decomposed", "": "empty key", 'quote"and\\': "escapes\n\t"},
        nested(200),
    ],
    ids=["unicode", "large-integers", "scalars", "keys", "nesting-200"],
)
async def test_awkward_documents_survive(alice: Caller, request_document: dict[str, Any]) -> None:
    status, stored = await round_trip(alice, await new_session(alice), request_document)
    assert status == 200
    assert stored == sent(request_document)


@pytest.mark.parametrize(
    "raw_request",
    [
        b'{"bad": "nul \\u0000 inside"}',
        b'{"nul\\u0000key": 1}',
        b'{"lone": "\\ud800"}',
        b'{"inf": 1e400}',
        b'{"nan": NaN}',
        b"[" * 2000 + b"]" * 2000,
        b'{"deep": ' + b"[" * 2000 + b"]" * 2000 + b"}",
        b'{"number": 1' + b"0" * 200_000 + b"}",
    ],
    ids=[
        "nul-in-string",
        "nul-in-key",
        "lone-surrogate",
        "overflow",
        "nan",
        "deep-array",
        "deep-member",
        "200k-digits",
    ],
)
async def test_documents_postgresql_cannot_hold_are_422_never_500(alice: Caller, raw_request: bytes) -> None:
    session_id = await new_session(alice)
    body = b'{"name": "x", "request": ' + raw_request + b"}"
    response = await alice.call("POST", f"/sessions/{session_id}/scenarios", body)
    assert response.status_code in (201, 422), response.text
    if response.status_code == 201:  # accepted documents must then read back as valid JSON
        read = await alice.call("GET", f"/scenarios/{response.json()['id']}")
        assert read.status_code == 200
        json.loads(read.content)
    listed = (await alice.call("GET", f"/sessions/{session_id}/scenarios")).json()["items"]
    assert len(listed) == (1 if response.status_code == 201 else 0)


def has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


json_documents = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**100), max_value=2**100) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=st.dictionaries(st.text(max_size=8), json_documents, max_size=5))
async def test_arbitrary_documents_round_trip_or_are_422(alice: Caller, document: dict[str, Any]) -> None:
    status, stored = await round_trip(alice, await new_session(alice), document)
    if status == 422:
        # The one thing PostgreSQL's JSONB cannot hold.
        assert has_nul(document)
    else:
        assert stored == sent(document)
