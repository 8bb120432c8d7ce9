"""Where an outbound webhook may go (SSRF): the checks at registration and before every attempt.

A URL is https (http only with OUTBOUND_WEBHOOK_ALLOW_PRIVATE), has no control character, and is one
httpx can send (its host valid under IDNA 2008: the name resolved and connected to is httpx's ASCII
form of it). Its host is resolved and every address it resolves to must be public: no address of
the special-purpose ranges in `_SPECIAL` (a list of our own, so the answer does not depend on the
Python version's `ipaddress` tables), no cloud metadata address, and no IPv4-mapped (or
IPv4-compatible, 6to4, NAT64) IPv6 form of one. One bad address refuses the
whole name: a receiver that resolves to ten public addresses and one internal one could be made to
reach the internal one. The connection then goes to a checked address (`transport.py`), so a
second resolution cannot switch it (DNS rebinding).

With OUTBOUND_WEBHOOK_ALLOW_PRIVATE (development and tests, never production) loopback and private
addresses and http:// are allowed; the metadata addresses never are.

Names are resolved on a small thread pool of this module's own, with a cap on lookups in flight:
a resolver that hangs (a slow zone, perhaps on purpose) holds at most those threads, never the
event loop's default pool that the rest of the process (database connections, solver processes)
needs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> every address the host resolves to (injectable: tests answer with what they need).
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

MAX_URL_LENGTH = 2048
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# Instance metadata services: never a webhook target, even in development.
_METADATA = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure IMDS, OpenStack…
        "fd00:ec2::254",  # AWS (IPv6)
        "168.63.129.16",  # Azure wire server (a public address: is_global says yes)
        "192.0.0.192",  # Oracle Cloud
        "100.100.100.200",  # Alibaba Cloud
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Special-purpose ranges (the IANA registries) that are no webhook receiver, spelled out: Python's
# own tables changed between patch releases (CVE-2024-4032), and what is refused must not.
_SPECIAL = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "3fff::/20",
        "5f00::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
# A resolver that does not answer within this is a host that could not be resolved.
RESOLVE_TIMEOUT_S = 5.0
# Lookups in flight at once (each holds one of the module's threads until the resolver answers,
# whether or not anyone still waits for it); one more is refused at once, as unresolvable.
MAX_LOOKUPS = 4


class AddressRefused(ValueError):
    """The URL may not be delivered to; the message is safe to show its owner. `detail` says more
    (the address refused, and why) for the operator's log: the owner is not told which internal
    addresses a name resolves to, nor whether it resolves at all."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message


# One message for every host that is no acceptable target: a caller cannot tell apart a name that
# does not resolve from one that resolves to an internal address (a probe of the network).
_HOST_REFUSED = (
    "The URL's host cannot be delivered to: it does not resolve, or resolves to an address that "
    "is not public."
)


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: the name to send as Host and TLS SNI (ASCII: an internationalised name in its
    `xn--` form, as httpx sends it), and the addresses to connect to."""

    url: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


_resolving = ThreadPoolExecutor(max_workers=MAX_LOOKUPS, thread_name_prefix="outbound-dns")
_lookups = threading.BoundedSemaphore(MAX_LOOKUPS)


def _lookup(host: str, port: int) -> list[tuple[object, ...]]:
    try:
        return [info[4] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
    finally:
        _lookups.release()  # when the resolver answered, not when the caller gave up waiting


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address the system's resolver gives `host` (A and AAAA), looked up on the module's
    own threads; OSError at once when MAX_LOOKUPS are already in flight."""
    if not _lookups.acquire(blocking=False):
        raise OSError("too many host name lookups in flight")
    try:
        future = asyncio.get_running_loop().run_in_executor(_resolving, _lookup, host, port)
    except BaseException:
        _lookups.release()
        raise
    found: list[IPAddress] = []
    for sockaddr in await future:
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in found:
            found.append(address)
    return found


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_url(url: str, *, allow_private: bool) -> SplitResult:
    """The URL's parts, once its form is acceptable (scheme, host, length); AddressRefused if not."""
    if len(url) > MAX_URL_LENGTH:
        raise AddressRefused(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if _CONTROL.search(url):
        raise AddressRefused("The URL must not contain control characters.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is no number or out of range)
    except ValueError:
        raise AddressRefused("The URL is not valid.") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise AddressRefused(
            "The URL must be https://." if not allow_private else "The URL must be https:// or http://."
        )
    if not parts.hostname:
        raise AddressRefused("The URL has no host.")
    if "%" in parts.hostname:
        # An IPv6 zone (fe80::1%eth0) names one of our interfaces: never a receiver's address.
        raise AddressRefused("The URL's host must not name a network interface (an IPv6 zone).")
    if parts.username is not None or parts.password is not None:
        raise AddressRefused("The URL must not carry credentials; check the signature instead.")
    if parts.fragment:
        raise AddressRefused("The URL must not have a fragment.")
    return parts


def sendable(url: str) -> httpx.URL:
    """The URL as httpx sends it; AddressRefused for one it would refuse (a host that is valid
    IDNA 2003, as the system resolver reads it, but not IDNA 2008, as httpx does: `☃.net`)."""
    try:
        sent = httpx.URL(url)
        sent.host  # noqa: B018 (decodes an `xn--` label: httpx does when it sends, and may fail then)
    except (httpx.InvalidURL, ValueError):  # idna's errors are UnicodeErrors, so ValueErrors
        raise AddressRefused("The URL's host is not a valid host name.") from None
    return sent


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4 or NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    packed = address.packed
    if packed[:12] == bytes(12) and int(address) > 1:  # ::a.b.c.d (IPv4-compatible, deprecated)
        return ipaddress.IPv4Address(packed[12:])
    return None


def refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why `address` may not be connected to; None when it may."""
    if address in _METADATA:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            why = refusal(embedded, allow_private=allow_private)
            return None if why is None else f"an IPv6 form of {why}"
    if allow_private:
        return None
    for network in _SPECIAL:
        if address.version == network.version and address in network:
            return f"a special-purpose address ({network})"
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT, "a carrier-grade NAT address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "an address that is not public"),
    )
    for refused, why in checks:
        if refused:
            return why
    return None


async def check_url(url: str, resolver: Resolver, *, allow_private: bool) -> Target:
    """The URL's target once every address of its host is allowed; AddressRefused otherwise."""
    parse_url(url, allow_private=allow_private)
    sent = sendable(url)
    # The ASCII (punycode) host: what httpx connects to and sends as Host, so what is resolved and
    # checked, and what the transport compares with.
    host = sent.raw_host.decode("ascii")
    port = sent.port or (443 if sent.scheme == "https" else 80)
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                addresses = await resolver(host, port)
        except (OSError, UnicodeError, TimeoutError) as exc:
            raise AddressRefused(_HOST_REFUSED, f"{host} could not be resolved ({exc!r})") from None
    if not addresses:
        raise AddressRefused(_HOST_REFUSED, f"{host} resolves to no address")
    for address in addresses:
        why = refusal(address, allow_private=allow_private)
        if why is not None:
            raise AddressRefused(_HOST_REFUSED, f"{host} resolves to {why} ({address}), which is refused")
    return Target(url=url, host=host, port=port, addresses=tuple(addresses))


@dataclass(slots=True)
class TargetPolicy:
    """Where this process lets webhooks go: OUTBOUND_WEBHOOK_ALLOW_PRIVATE, and how names are
    resolved (the system's resolver; tests put one of their own in its place)."""

    allow_private: bool
    resolver: Resolver = system_resolver

    async def check(self, url: str) -> Target:
        return await check_url(url, self.resolver, allow_private=self.allow_private)
