"""SSRF: a webhook URL is refused when its host resolves to any address that is not public, at
registration (422, pointer /url) and again before every attempt; the connection goes to the address
that was checked, whatever a later resolution says."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import Callable

import pytest
from fastapi import FastAPI

from service.config import Settings
from service.core.db import Database
from service.deps import app_state
from service.outbound import addresses
from service.outbound.addresses import AddressRefused, IPAddress, check_url, system_resolver
from tests.conftest import AppFactory, client_for
from tests.kit.receiver import Receiver
from tests.kit.waiting import eventually
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
    with pytest.raises(AddressRefused) as refused:
        await check_url("https://hooks.example.com/x", resolving_to(address), allow_private=False)
    assert str(ipaddress.ip_address(address)) in refused.value.detail


# Special-purpose ranges that the `ipaddress` of some Python versions calls global (its tables were
# only corrected with CVE-2024-4032): refused by our own list, whatever the version says.
@pytest.mark.parametrize(
    "address",
    [
        "192.0.0.8",  # IETF protocol assignments (192.0.0.0/24)
        "192.0.0.192",  # Oracle Cloud metadata
        "192.88.99.1",  # 6to4 relay anycast
        "198.18.0.1",  # benchmarking
        "fec0::1",  # site-local (deprecated, still routed internally by some networks)
        "2001:2::1",  # benchmarking (IETF protocol assignments, 2001::/23)
        "3fff::1",  # documentation
        "5f00::1",  # SRv6 SIDs
        "100::1",  # discard-only
        "64:ff9b:1::a00:1",  # local-use NAT64
        "168.63.129.16",  # Azure wire server: a public address
    ],
)
async def test_special_purpose_ranges_are_refused_whatever_the_python_version(address: str) -> None:
    with pytest.raises(AddressRefused) as refused:
        await check_url("https://hooks.example.com/x", resolving_to(address), allow_private=False)
    assert address in refused.value.detail


async def test_cloud_metadata_addresses_are_refused_even_where_private_ones_are_allowed() -> None:
    for address in ("168.63.129.16", "192.0.0.192", "100.100.100.200"):
        with pytest.raises(AddressRefused) as refused:
            await check_url("http://hooks.example.com/x", resolving_to(address), allow_private=True)
        assert "metadata" in refused.value.detail


async def test_an_unresolvable_host_and_a_private_one_get_the_same_message() -> None:
    """The owner cannot map the internal network: which names resolve, and to what, is not said
    (the operator's log has it, in `detail`)."""

    async def unknown(host: str, port: int) -> list[IPAddress]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(AddressRefused) as nowhere:
        await check_url("https://nowhere.example.com/x", unknown, allow_private=False)
    with pytest.raises(AddressRefused) as private:
        await check_url("https://internal.example.com/x", resolving_to("10.0.0.1"), allow_private=False)
    assert str(nowhere.value) == str(private.value)
    assert "10.0.0.1" not in str(private.value) and "10.0.0.1" in private.value.detail
    assert "could not be resolved" in nowhere.value.detail


@pytest.mark.parametrize("character", ["\x00", "\x01", "\n", "\x1f", "\x7f"])
async def test_control_characters_are_refused(character: str) -> None:
    with pytest.raises(AddressRefused, match="control characters"):
        await check_url(f"https://hooks.example.com/a{character}b", resolving_to(PUBLIC), allow_private=False)


@pytest.mark.parametrize("url", ["https://\u2603.net/", "https://xn--a.example/"])
async def test_hosts_httpx_cannot_send_to_are_refused(url: str) -> None:
    """Valid IDNA 2003 (what the system resolver reads) but not IDNA 2008 (what httpx sends)."""
    with pytest.raises(AddressRefused, match="not a valid host name"):
        await check_url(url, resolving_to(PUBLIC), allow_private=False)


async def test_an_internationalised_host_is_resolved_and_pinned_in_its_ascii_form() -> None:
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[IPAddress]:
        asked.append(host)
        return [ipaddress.ip_address(PUBLIC)]

    target = await check_url("https://B\u00fccher.example/x", resolver, allow_private=False)
    assert asked == ["xn--bcher-kva.example"] and target.host == "xn--bcher-kva.example"


async def test_names_are_resolved_on_the_modules_own_bounded_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A resolver that hangs holds at most MAX_LOOKUPS of the module's threads: never one of the
    loop's default pool (database connections, solver processes), and no lookup queues behind them."""
    answer = threading.Event()
    lock = threading.Lock()
    threads: list[str] = []
    in_flight = 0
    most = 0

    def hanging(host: str, *args: object, **kwargs: object) -> list[object]:
        nonlocal in_flight, most
        with lock:
            threads.append(threading.current_thread().name)
            in_flight += 1
            most = max(most, in_flight)
        try:
            answer.wait(30)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    monkeypatch.setattr(addresses, "RESOLVE_TIMEOUT_S", 0.05)
    try:
        results = await asyncio.gather(
            *(
                check_url(f"https://h{n}.slow.example/", system_resolver, allow_private=False)
                for n in range(3 * addresses.MAX_LOOKUPS)
            ),
            return_exceptions=True,
        )
        assert all(isinstance(result, AddressRefused) for result in results)
        assert threads and all(name.startswith("outbound-dns") for name in threads), threads
        assert most <= addresses.MAX_LOOKUPS
        # The default pool is free for everyone else meanwhile.
        assert await asyncio.get_running_loop().run_in_executor(None, lambda: "free") == "free"
    finally:
        answer.set()

    async def drained() -> bool:
        return in_flight == 0

    await eventually(drained, timeout=30, every=0.01)
    # Once the resolver answered, its threads and places are free again.
    before = len(threads)
    with pytest.raises(AddressRefused):
        await check_url("https://after.slow.example/", system_resolver, allow_private=False)
    assert len(threads) == before + 1


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
        with pytest.raises(AddressRefused) as refused:
            await check_url("http://metadata.internal/", resolving_to(metadata), allow_private=True)
        assert "metadata" in refused.value.detail
    with pytest.raises(AddressRefused, match="IPv6 zone"):
        await check_url("http://[fe80::1%25eth0]:9/x", resolving_to("127.0.0.1"), allow_private=True)


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
