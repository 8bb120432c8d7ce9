"""The webhook endpoint routes: validation with pointers, pagination, deletion, and another user's
endpoint or delivery answering 404 on every route, exactly as a missing one."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import AppFactory, client_for
from tests.kit.receiver import Receiver
from tests.outbound.conftest import EVENTS, cancelled_solve, deliveries, register
from tests.planning.conftest import Caller, sign_in


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"events": EVENTS}, "/url"),
        ({"url": "", "events": EVENTS}, "/url"),
        ({"url": "https://example.com/x"}, "/events"),
        ({"url": "https://example.com/x", "events": []}, "/events"),
        ({"url": "https://example.com/x", "events": ["solution.started"]}, "/events/0"),
        ({"url": "https://example.com/x", "events": ["solution.failed", "solution.failed"]}, "/events"),
        ({"url": "https://example.com/x", "events": EVENTS, "secret": "mine"}, "/secret"),
        ({"url": "ftp://example.com/x", "events": EVENTS}, "/url"),
    ],
)
async def test_invalid_bodies_are_422_with_a_pointer(
    alice: Caller, body: dict[str, Any], pointer: str
) -> None:
    response = await alice.call("POST", "/webhook-endpoints", body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert pointer in [error["pointer"] for error in response.json()["errors"]]


async def test_endpoints_are_listed_newest_first_in_pages_and_deleted(
    alice: Caller, receiver: Receiver
) -> None:
    made = [await register(alice, receiver.url(f"/{n}")) for n in range(3)]
    first = await alice.call("GET", "/webhook-endpoints", params={"limit": 2})
    assert first.status_code == 200
    page = first.json()
    assert [item["id"] for item in page["items"]] == [made[2]["id"], made[1]["id"]]
    assert set(page["items"][0]) == {
        "id",
        "url",
        "events",
        "enabled",
        "disabled_reason",
        "created_by",
        "created_at",
        "updated_at",
    }
    rest = (await alice.call("GET", "/webhook-endpoints", params={"cursor": page["next_cursor"]})).json()
    assert [item["id"] for item in rest["items"]] == [made[0]["id"]] and rest["next_cursor"] is None

    await cancelled_solve(alice)
    assert len(await deliveries(alice, made[0]["id"])) == 1
    assert (await alice.call("DELETE", f"/webhook-endpoints/{made[0]['id']}")).status_code == 204
    assert (await alice.call("GET", f"/webhook-endpoints/{made[0]['id']}/deliveries")).status_code == 404
    assert (await alice.call("DELETE", f"/webhook-endpoints/{made[0]['id']}")).status_code == 404


async def test_another_users_endpoint_and_deliveries_are_404_on_every_route(
    alice: Caller, bob: Caller, receiver: Receiver
) -> None:
    endpoint = await register(alice, receiver.url())
    await cancelled_solve(alice)
    [delivery] = await deliveries(alice, endpoint["id"])
    base = f"/webhook-endpoints/{endpoint['id']}"
    routes = [
        ("DELETE", base),
        ("POST", f"{base}/rotate-secret"),
        ("GET", f"{base}/deliveries"),
        ("POST", f"{base}/deliveries/{delivery['id']}/replay"),
    ]
    missing = f"/webhook-endpoints/{uuid.uuid4()}"
    for method, path in routes:
        foreign = await bob.call(method, path)
        absent = await bob.call(method, path.replace(base, missing))
        assert foreign.status_code == absent.status_code == 404, (method, path)
        assert foreign.json() == absent.json()
    assert (await bob.call("GET", "/webhook-endpoints")).json()["items"] == []
    # A delivery of one endpoint is not reachable through another endpoint of its owner either.
    other = await register(alice, receiver.url("/other"))
    crossed = await alice.call("POST", f"/webhook-endpoints/{other['id']}/deliveries/{delivery['id']}/replay")
    assert crossed.status_code == 404
    # Nothing of alice's changed.
    assert (await alice.call("GET", "/webhook-endpoints")).json()["items"][-1]["id"] == endpoint["id"]
    assert len(await deliveries(alice, endpoint["id"])) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/a\u0000b",  # PostgreSQL text cannot hold NUL: once a 500
        "http://127.0.0.1:9/a\u001fb",
        "http://127.0.0.1:9/a\u007fb",
        "https://\u2603.net/",  # IDNA 2003 but not IDNA 2008: httpx could never send to it
        "https://xn--a.example/",
    ],
)
async def test_urls_that_could_never_be_sent_are_422_at_the_url(alice: Caller, url: str) -> None:
    response = await alice.call("POST", "/webhook-endpoints", {"url": url, "events": EVENTS})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["pointer"] for error in response.json()["errors"]] == ["/url"]
    assert (await alice.call("GET", "/webhook-endpoints")).json()["items"] == []


async def test_the_scheme_may_be_upper_case(alice: Caller, receiver: Receiver) -> None:
    endpoint = await register(alice, receiver.url().replace("http://", "HTTP://"))
    assert endpoint["url"].startswith("HTTP://")


async def test_a_workspace_has_at_most_the_configured_number_of_endpoints(
    app_factory: AppFactory, receiver: Receiver
) -> None:
    async with (
        app_factory(outbound_webhook_allow_private=True, outbound_webhook_max_endpoints=2) as app,
        client_for(app) as http,
    ):
        alice = await sign_in(app, http, "alice")
        bob = await sign_in(app, http, "bob")
        first = await register(alice, receiver.url("/1"))
        await register(alice, receiver.url("/2"))
        refused = await alice.call(
            "POST", "/webhook-endpoints", {"url": receiver.url("/3"), "events": EVENTS}
        )
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "2 webhook endpoints" in refused.json()["detail"]
        assert len((await alice.call("GET", "/webhook-endpoints")).json()["items"]) == 2
        await register(bob, receiver.url("/bob"))  # the cap is each workspace's
        assert (await alice.call("DELETE", f"/webhook-endpoints/{first['id']}")).status_code == 204
        await register(alice, receiver.url("/3"))
