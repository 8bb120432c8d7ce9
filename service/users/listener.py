"""The LISTEN side of identity announcements: one dedicated connection per app instance.

While connected, the identity service may cache; once the connection is known lost (closed, or failing
its health check every HEALTH_INTERVAL_SECONDS) the service goes blind — every request reads the
database — until a new connection is listening and the service has reloaded. LISTEN needs a session
of its own, so the connection goes to DATABASE_DIRECT_URL (not a transaction-mode pooler). A connection
that dies silently is noticed within HEALTH_INTERVAL_SECONDS + 5 s (TCP keepalives shorten that);
the identity cache's own TTL bounds staleness beyond it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import asyncpg

from service.db import asyncpg_connect_args
from service.users.identity import IdentityService
from service.users.store import IDENTITY_CHANNEL

log = logging.getLogger("routebook.identity")

HEALTH_INTERVAL_SECONDS = 5.0
LISTENER_APPLICATION_NAME = "routebook-identity-listener"
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)


class IdentityListener:
    def __init__(self, url: str, identity: IdentityService) -> None:
        self._connect_args = asyncpg_connect_args(url)
        self._identity = identity
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._pings: dict[str, asyncio.Future[None]] = {}
        self._connected = False
        # asyncpg runs one operation at a time per connection: concurrent syncs and the health
        # check take turns (notifications arrive regardless).
        self._conn_lock = asyncio.Lock()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="identity-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._identity.go_blind()

    async def sync(self, timeout: float = 5.0) -> None:
        """Returns once every announcement committed before this call has been applied here.

        NOTIFY delivers in commit order, so a ping sent now arrives after all of them.
        """
        conn = self._conn
        if conn is None or not self._identity.live:
            return  # blind: the service reads the database, nothing to wait for
        token = uuid.uuid4().hex
        arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings[token] = arrived
        try:
            async with asyncio.timeout(timeout):
                async with self._conn_lock:
                    await conn.execute("SELECT pg_notify($1, $2)", IDENTITY_CHANNEL, f"ping::{token}")
                await arrived
        finally:
            self._pings.pop(token, None)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "identity listener disconnected (%s); caches bypassed until it is back",
                    type(exc).__name__,
                )
            finally:
                self._identity.go_blind()
                await self._close()
            # Back off while the database stays unreachable; start over after a good connection.
            failures = 0 if self._connected else failures + 1
            self._connected = False
            await asyncio.sleep(RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)])

    async def _listen_once(self) -> None:
        self._lost.clear()
        conn = await asyncpg.connect(
            **self._connect_args,
            timeout=5,
            statement_cache_size=0,
            server_settings={"application_name": LISTENER_APPLICATION_NAME},
        )
        self._conn = conn
        conn.add_termination_listener(lambda _conn: self._lost.set())
        await conn.add_listener(IDENTITY_CHANNEL, self._on_notification)
        # Listening first, then loading: nothing committed in between can be missed.
        await self._identity.go_live()
        self._connected = True
        log.info("identity listener connected")
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), HEALTH_INTERVAL_SECONDS)
            if self._lost.is_set():
                raise ConnectionError("listener connection closed")
            async with asyncio.timeout(5), self._conn_lock:
                await conn.fetchval("SELECT 1")

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith("ping::"):
            arrived = self._pings.get(payload[6:])
            if arrived is not None and not arrived.done():
                arrived.set_result(None)
            return
        self._identity.announced(payload)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)
