"""An httpx transport that connects only to addresses already checked (addresses.py).

httpx would resolve the URL's host again when it connects, and a name whose answer changes
between the check and the connection (DNS rebinding, a TTL of zero) would then reach whatever the
second answer says. Here httpcore's network backend ignores the name and connects to the checked
addresses, in order; the request keeps its URL, so the Host header and the TLS server name (SNI,
and the certificate's check) are still the name's. No proxy from the environment is used: a proxy
would connect on our behalf to the name, unchecked.
"""

from __future__ import annotations

import ssl
import typing

import httpcore
import httpx

from service.outbound.addresses import Target


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, target: Target) -> None:
        self._target = target
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # Both ASCII: httpcore passes the URL's raw (punycode) host, and the target holds the same.
        if host.strip("[]").lower() != self._target.host.strip("[]").lower() or port != self._target.port:
            # Only the checked URL is ever sent (redirects are not followed): anything else is a bug.
            raise httpcore.ConnectError(f"refusing to connect to {host}:{port}: not the checked target")
        error: Exception | None = None
        for address in self._target.addresses:
            try:
                return await self._backend.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None  # a Target has at least one address
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not a webhook target")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """One target's connections, to its checked addresses only."""

    def __init__(self, target: Target, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx builds its httpcore pool without a way to pass a network backend; this is the same
        # pool, with one. One connection: a transport serves one delivery attempt.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=1,
            max_keepalive_connections=0,
            network_backend=_PinnedBackend(target),
        )
