"""Where an outbound webhook may go (SSRF): the checks at registration and before every attempt.

A URL is https (http only with OUTBOUND_WEBHOOK_ALLOW_PRIVATE); its host is resolved and every
address it resolves to must be public: no loopback, private, link-local, multicast, reserved or
unspecified address, no carrier-grade NAT (100.64.0.0/10), no cloud metadata address, and no
IPv4-mapped (or IPv4-compatible, 6to4, NAT64) IPv6 form of one. One bad address refuses the
whole name: a receiver that resolves to ten public addresses and one internal one could be made to
reach the internal one. The connection then goes to a checked address (`transport.py`), so a
second resolution cannot switch it (DNS rebinding).

With OUTBOUND_WEBHOOK_ALLOW_PRIVATE (development and tests, never production) loopback and private
addresses and http:// are allowed; the metadata addresses never are.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> every address the host resolves to (injectable: tests answer with what they need).
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

MAX_URL_LENGTH = 2048
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# A resolver that does not answer within this is a host that could not be resolved.
RESOLVE_TIMEOUT_S = 5.0


class AddressRefused(ValueError):
    """The URL may not be delivered to; the message says why, and is safe to show its owner."""


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: the name to send as Host and TLS SNI, and the addresses to connect to."""

    url: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address the system's resolver gives `host` (A and AAAA)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in found:
            found.append(address)
    return found


def parse_url(url: str, *, allow_private: bool) -> SplitResult:
    """The URL's parts, once its form is acceptable (scheme, host, length); AddressRefused if not."""
    if len(url) > MAX_URL_LENGTH:
        raise AddressRefused(f"The URL is longer than {MAX_URL_LENGTH} characters.")
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
    if parts.username is not None or parts.password is not None:
        raise AddressRefused("The URL must not carry credentials; check the signature instead.")
    if parts.fragment:
        raise AddressRefused("The URL must not have a fragment.")
    return parts


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
    parts = parse_url(url, allow_private=allow_private)
    host = parts.hostname
    assert host is not None  # parse_url refused a URL without one
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                addresses = await resolver(host, port)
        except (OSError, UnicodeError, TimeoutError):
            raise AddressRefused(f"The host {host} could not be resolved.") from None
    if not addresses:
        raise AddressRefused(f"The host {host} could not be resolved.")
    for address in addresses:
        why = refusal(address, allow_private=allow_private)
        if why is not None:
            raise AddressRefused(f"The host {host} resolves to {why} ({address}), which is refused.")
    return Target(url=url, host=host, port=port, addresses=tuple(addresses))


@dataclass(slots=True)
class TargetPolicy:
    """Where this process lets webhooks go: OUTBOUND_WEBHOOK_ALLOW_PRIVATE, and how names are
    resolved (the system's resolver; tests put one of their own in its place)."""

    allow_private: bool
    resolver: Resolver = system_resolver

    async def check(self, url: str) -> Target:
        return await check_url(url, self.resolver, allow_private=self.allow_private)
