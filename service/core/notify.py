"""The LISTEN side of PostgreSQL NOTIFY: one dedicated connection per process, shared by subscribers.

Identity announcements (a tombstone, a revoked session) and solve events (progress, final status)
arrive here. While connected, subscribers may trust what they cached; once the connection is known
lost (closed, or failing its health check every HEALTH_INTERVAL_SECONDS) every subscriber is told
(`on_lost`) until a new connection is listening and each has reloaded (`on_live`). A connection that
dies silently is noticed within HEALTH_INTERVAL_SECONDS + 5 s. LISTEN needs a session of its own,
so this connects to DATABASE_DIRECT_URL (a direct or session-mode connection, never a
transaction-mode pooler).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from service.core.db import asyncpg_connect_args

log = logging.getLogger("routebook.notify")

HEALTH_INTERVAL_SECONDS = 5.0
LISTENER_APPLICATION_NAME = "routebook-listener"
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)
# Barrier pings travel on a channel of their own: NOTIFY delivers in commit order across channels.
_PING_CHANNEL = "routebook_ping"


@dataclass(frozen=True)
class Subscription:
    channel: str
    on_message: Callable[[str], None]
    on_live: Callable[[], Awaitable[None]] | None = None
    on_lost: Callable[[], None] | None = None


class Listener:
    def __init__(self, url: str, *, application_name: str = LISTENER_APPLICATION_NAME) -> None:
        self._connect_args = asyncpg_connect_args(url)
        self._application_name = application_name
        self._subscriptions: list[Subscription] = []
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._pings: dict[str, asyncio.Future[None]] = {}
        self._connected = False
        self.live = False
        # asyncpg runs one operation at a time per connection: concurrent syncs and the health
        # check take turns (notifications arrive regardless).
        self._conn_lock = asyncio.Lock()

    def subscribe(self, subscription: Subscription) -> None:
        """Register before `start()`: channels are listened to when the connection opens."""
        self._subscriptions.append(subscription)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notify-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._lose()

    async def sync(self, timeout: float = 5.0) -> None:
        """Returns once every notification committed before this call has been delivered here.

        NOTIFY delivers in commit order, so a ping sent now arrives after all of them.
        """
        conn = self._conn
        if conn is None or not self.live:
            return  # lost: subscribers read the database, nothing to wait for
        token = uuid.uuid4().hex
        arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings[token] = arrived
        try:
            async with asyncio.timeout(timeout):
                async with self._conn_lock:
                    await conn.execute("SELECT pg_notify($1, $2)", _PING_CHANNEL, token)
                await arrived
        finally:
            self._pings.pop(token, None)

    def _lose(self) -> None:
        self.live = False
        for subscription in self._subscriptions:
            if subscription.on_lost is not None:
                subscription.on_lost()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "listener disconnected (%s); caches bypassed until it is back", type(exc).__name__
                )
            finally:
                self._lose()
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
            server_settings={"application_name": self._application_name},
        )
        self._conn = conn
        conn.add_termination_listener(lambda _conn: self._lost.set())
        await conn.add_listener(_PING_CHANNEL, self._on_ping)
        for subscription in self._subscriptions:
            await conn.add_listener(subscription.channel, self._deliver(subscription))
        # Listening first, then loading: nothing committed in between can be missed.
        for subscription in self._subscriptions:
            if subscription.on_live is not None:
                await subscription.on_live()
        self.live = True
        self._connected = True
        log.info("listener connected")
        while True:
            # asyncio.timeout, never wait_for, around a wait in a loop: Python 3.11's wait_for
            # returns normally when the cancel of its task meets the end of what it waits for
            # (the wait's own end, or its timeout), and the loop then runs on, never to stop. The
            # outbound dispatcher did exactly that in tests, under load.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEALTH_INTERVAL_SECONDS):
                    await self._lost.wait()
            if self._lost.is_set():
                raise ConnectionError("listener connection closed")
            async with asyncio.timeout(5), self._conn_lock:
                await conn.fetchval("SELECT 1")

    @staticmethod
    def _deliver(subscription: Subscription) -> Callable[[Any, int, str, str], None]:
        def deliver(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            try:
                subscription.on_message(payload)
            except Exception:
                # One subscriber's bug must not take the shared connection down.
                log.exception("notification handler for %s failed", subscription.channel)

        return deliver

    def _on_ping(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        arrived = self._pings.get(payload)
        if arrived is not None and not arrived.done():
            arrived.set_result(None)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await conn.close()
