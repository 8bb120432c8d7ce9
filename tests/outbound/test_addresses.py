"""SSRF: a webhook URL is refused when its host resolves to any address that is not public, at
registration (422, pointer /url) and again before every attempt; the connection goes to the address
that was checked, whatever a later resolution says."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI

from service.config import Settings
from service.core.db import Database
from service.deps import app_state
from service.outbound.addresses import AddressRefused, check_url
from tests.conftest import AppFactory, client_for
from tests.kit.receiver import Receiver
from tests.outbound.conftest import (
    EVENTS,
    cancelled_solve,
    dispatching,
    register,
    resolving_to,
    until_attempted,
    until_delivery,
)
from tests.planning.conftest import sign_in

REFUSED = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "169.254.10.1",  # link-local
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",  # noqa: S104 (an address to refuse, not one to bind)
    "224.0.0.1",  # multicast
    "240.0.0.1",  # reserved
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",  # cloud metadata (IPv6)
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped forms
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "64:ff9b::a9fe:a9fe",  # NAT64 form of the metadata address
]
PUBLIC = "93.184.215.14"


@pytest.mark.parametrize("address", REFUSED)
async def test_every_non_public_address_is_refused(address: str) -> None:
    with pytest.raises(AddressRefused, match="refused"):
        await check_url("https://hooks.example.com/x", resolving_to(address), allow_private=False)


async def test_one_bad_address_among_public_ones_refuses_the_name() -> None:
    with pytest.raises(AddressRefused):
        await check_url("https://hooks.example.com/x", resolving_to(PUBLIC, "10.0.0.7"), allow_private=False)
    target = await check_url("https://hooks.example.com:8443/x", resolving_to(PUBLIC), allow_private=False)
    assert (target.host, target.port, [str(a) for a in target.addresses]) == (
        "hooks.example.com",
        8443,
        [PUBLIC],
    )


async def test_ip_literals_are_checked_without_resolving() -> None:
    async def never(host: str, port: int) -> list:  # type: ignore[type-arg]
        raise AssertionError("an IP literal is not resolved")

    with pytest.raises(AddressRefused):
        await check_url("https://[::ffff:7f00:1]/x", never, allow_private=False)
    with pytest.raises(AddressRefused):
        await check_url("https://127.0.0.1/x", never, allow_private=False)


async def test_allow_private_admits_loopback_and_http_but_never_metadata() -> None:
    await check_url("http://localhost:9/x", resolving_to("127.0.0.1"), allow_private=True)
    for metadata in ("169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"):
        with pytest.raises(AddressRefused, match="metadata"):
            await check_url("http://metadata.internal/", resolving_to(metadata), allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "ftp://hooks.example.com/",
        "https:///nohost",
        "https://u:p@hooks.example.com/",
    ],
)
async def test_only_https_urls_without_credentials_outside_development(url: str) -> None:
    with pytest.raises(AddressRefused):
        await check_url(url, resolving_to(PUBLIC), allow_private=False)


async def test_registration_refuses_private_targets_with_a_pointer_to_the_url(
    app_factory: AppFactory,
) -> None:
    async with app_factory() as app, client_for(app) as http:
        alice = await sign_in(app, http, "alice")
        for resolved, url in [
            ("10.0.0.1", "https://hooks.example.com/x"),
            ("169.254.169.254", "https://hooks.example.com/x"),
            ("::ffff:127.0.0.1", "https://hooks.example.com/x"),
            (PUBLIC, "http://hooks.example.com/x"),  # http:// without ALLOW_PRIVATE
        ]:
            app_state(app).webhook_targets.resolver = resolving_to(resolved)
            response = await alice.call("POST", "/webhook-endpoints", {"url": url, "events": EVENTS})
            assert response.status_code == 422, response.text
            assert response.headers["content-type"] == "application/problem+json"
            [error] = response.json()["errors"]
            assert (error["pointer"], error["loc"], error["type"]) == ("/url", ["body", "url"], "url_refused")
        assert (await alice.call("GET", "/webhook-endpoints")).json()["items"] == []

        app_state(app).webhook_targets.resolver = resolving_to(PUBLIC)
        await register(alice, "https://hooks.example.com/x")


async def test_a_name_that_resolves_to_a_private_address_at_delivery_is_not_contacted(
    app: FastAPI, receiver: Receiver, service_db: Database, settings_for: Callable[..., Settings]
) -> None:
    """Registered while it resolved to a public address; by the attempt it resolves to the
    receiver's loopback address (DNS rebinding): refused, and the receiver hears nothing."""
    async with client_for(app) as http:
        alice = await sign_in(app, http, "alice")
        app_state(app).webhook_targets.resolver = resolving_to(PUBLIC)
        endpoint = await register(alice, f"https://hooks.example.com:{receiver.port}/x")
        await cancelled_solve(alice)
        strict = settings_for(outbound_webhook_retry_base_s=0.02)  # no ALLOW_PRIVATE: as production
        async with dispatching(strict, service_db, resolver=resolving_to("127.0.0.1")):
            delivery = await until_attempted(alice, endpoint["id"], 2)
    # Refused before every attempt (and retried: the name may come to resolve elsewhere).
    assert [a["error"] for a in delivery["attempts"][:2]] == ["address_refused", "address_refused"]
    assert [a["status_code"] for a in delivery["attempts"][:2]] == [None, None]
    assert receiver.received == []


async def test_the_connection_goes_to_the_checked_address_with_the_name_as_host(
    app: FastAPI, receiver: Receiver, service_db: Database, dispatcher_settings: Settings
) -> None:
    """The name does not resolve anywhere but in our resolver: the dispatcher reaches the receiver
    only by connecting to the address it checked, and still sends the name as Host."""
    name = "receiver.routebook.invalid"
    async with client_for(app) as http:
        alice = await sign_in(app, http, "alice")
        app_state(app).webhook_targets.resolver = resolving_to("127.0.0.1")
        endpoint = await register(alice, f"http://{name}:{receiver.port}/pinned")
        await cancelled_solve(alice)
        async with dispatching(dispatcher_settings, service_db, resolver=resolving_to("127.0.0.1")):
            delivery = await until_delivery(alice, endpoint["id"], "succeeded")
    assert delivery["attempts"][0]["status_code"] == 204
    [received] = receiver.received
    assert received.path == "/pinned"
    assert received.headers["host"] == f"{name}:{receiver.port}"
