"""The dispatcher: sends queued outbound webhooks, in the worker process, beside the solves.

- Wake-ups: a NOTIFY on OUTBOUND_CHANNEL (a delivery queued, or replayed) through the process's one
  LISTEN connection, and a poll every POLL_S for retries that came due and anything missed.
- Claim: due deliveries of every workspace, as the dispatcher role (`Database.as_dispatcher`), FOR
  UPDATE SKIP LOCKED, each for LEASE: several workers' dispatchers share the work and never wait
  for each other; one that dies mid-attempt leaves its claims to lapse and be retried. Workspaces
  take turns (`claim_due`): one workspace's backlog, or slow receivers, cannot hold every slot.
- An attempt: the delivery is read in its workspace (`Database.as_workspace`); the URL is checked again (addresses.py) and the
  connection goes to a checked address (transport.py); the body is signed per Standard Webhooks
  with the endpoint's current secret and POSTed — TIMEOUT_S in all, redirects not followed, at most
  MAX_RESPONSE_BYTES of the answer read. Any exception of the attempt is recorded as one (never
  left to the claim's lapse). 2xx: delivered. 410: the endpoint is disabled. Anything
  else is retried after a delay drawn uniformly between 0 and OUTBOUND_WEBHOOK_RETRY_BASE_S · 2^n
  (full jitter, n the attempts so far, the window capped at MAX_DELAY_S) until a day after the
  event (the last retry at that moment at the latest); then it has failed. Every attempt is recorded, in the workspace; a retry keeps the delivery's
  id, and so its `webhook-id`.
- Bounded: at most CONCURRENCY attempts at once, none holding a database connection while it
  waits for the receiver; the pool is the worker's, whose solves take one connection per write.
- Housekeeping: every PURGE_INTERVAL_S, bodies older than a week are erased.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import ssl
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from standardwebhooks.webhooks import Webhook

from service.config import Settings
from service.core.db import Database, classify
from service.core.notify import Subscription
from service.outbound.addresses import AddressRefused, Resolver, Target, TargetPolicy, system_resolver
from service.outbound.events import DeliveryStatus
from service.outbound.repository import (
    GONE_REASON,
    OUTBOUND_CHANNEL,
    Claimed,
    DeliveryRepository,
    Outgoing,
    claim_due,
    purge_bodies,
)
from service.outbound.transport import PinnedTransport

log = logging.getLogger("routebook.outbound")

POLL_S = 1.0
CONCURRENCY = 8
LEASE = timedelta(seconds=60)
TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 64 * 1024
MAX_DELAY_S = 3600.0
PURGE_INTERVAL_S = 3600.0
USER_AGENT = "Routebook-Webhooks/1"


def retry_delay(base_s: float, attempts: int) -> float:
    """Full jitter: uniform in [0, base · 2^(attempts − 1)], the window capped at MAX_DELAY_S."""
    window = min(base_s * 2 ** min(max(attempts - 1, 0), 30), MAX_DELAY_S)
    return random.uniform(0, window)  # noqa: S311 (spreading retries, not a secret)


def signed_headers(delivery_id: uuid.UUID, secret: str, body: str, at: datetime) -> dict[str, str]:
    """Standard Webhooks headers: the delivery's id, the time of this attempt, and the signature."""
    msg_id = str(delivery_id)
    at = at.replace(microsecond=0)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(math.floor(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        resolver: Resolver = system_resolver,
        concurrency: int = CONCURRENCY,
        poll_s: float = POLL_S,
    ) -> None:
        self._db = db
        self._targets = TargetPolicy(settings.outbound_webhook_allow_private, resolver)
        self._retry_base_s = settings.outbound_webhook_retry_base_s
        self._concurrency = concurrency
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._sending: set[asyncio.Task[None]] = set()
        self._ssl: ssl.SSLContext = httpx.create_ssl_context()

    def subscriptions(self) -> list[Subscription]:
        """Register on the process's listener before it starts."""
        return [Subscription(OUTBOUND_CHANNEL, lambda _payload: self._wake.set(), on_live=self._live)]

    async def _live(self) -> None:
        self._wake.set()  # whatever was queued while the listener was down

    async def run(self) -> None:
        """Until cancelled; attempts under way are cancelled with it (their claims lapse)."""
        purge = asyncio.create_task(self._purge(), name="outbound-purge")
        try:
            await self._dispatch()
        finally:
            purge.cancel()
            for task in [purge, *self._sending]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _dispatch(self) -> None:
        while True:
            self._wake.clear()
            free = self._concurrency - len(self._sending)
            claimed: list[Claimed] = []
            if free > 0:
                try:
                    # The dispatcher role: due deliveries are every workspace's (migration 0011).
                    async with self._db.as_dispatcher() as conn:
                        claimed = await claim_due(conn, limit=free, lease=LEASE)
                except Exception as exc:
                    if classify(exc) is None:
                        log.exception("outbound deliveries not claimed")
                    else:
                        log.warning("outbound deliveries not claimed: database unavailable")
            for item in claimed:
                task = asyncio.create_task(self._send(item), name=f"webhook-{item.delivery_id}")
                self._sending.add(task)
                task.add_done_callback(self._done)
            if claimed and len(claimed) == free:
                continue  # there may be more due: take them once a slot is free
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_s):  # not wait_for: see core/notify.py
                    await self._wake.wait()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._wake.set()

    async def _send(self, claimed: Claimed) -> None:
        try:
            # Bound to the delivery's workspace, with no member: it is sent whoever is left in it.
            async with self._db.as_workspace(claimed.workspace) as conn:
                outgoing = await DeliveryRepository(conn, workspace=claimed.workspace).outgoing(
                    claimed.delivery_id
                )
            if outgoing is not None:
                await self._attempt(claimed.workspace, outgoing)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Its claim lapses and it is tried again.
            if classify(exc) is None:
                log.exception("webhook delivery %s failed in the dispatcher", claimed.delivery_id)
            else:
                log.warning("webhook delivery %s: database unavailable", claimed.delivery_id)

    async def _attempt(self, workspace: uuid.UUID, outgoing: Outgoing) -> None:
        attempted_at = datetime.now(UTC)
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        try:
            # TIMEOUT_S bounds the whole attempt, the host's resolution included.
            async with asyncio.timeout(TIMEOUT_S):
                target = await self._targets.check(outgoing.url)
                status_code = await self._post(target, outgoing, attempted_at)
        except AddressRefused as exc:
            log.warning("webhook delivery %s refused: %s", outgoing.delivery_id, exc.detail)
            error = "address_refused"
        except (TimeoutError, httpx.TimeoutException):
            error = "timeout"
        except httpx.ConnectError:
            error = "connect"
        except Exception as exc:
            # Anything else the receiver's URL or answer makes httpx (or a codec under it) raise is
            # the receiver's protocol, recorded and retried like any failed attempt: a delivery
            # must never be left to its claim's lapse, to be tried again forever unrecorded.
            log.warning("webhook delivery %s: %s", outgoing.delivery_id, type(exc).__name__)
            error = "protocol"
        duration_ms = round((time.monotonic() - started) * 1000)

        next_attempt_at: datetime | None = None
        if status_code is not None and 200 <= status_code < 300:
            status = DeliveryStatus.SUCCEEDED
        elif status_code == 410:
            status, error = DeliveryStatus.FAILED, "gone"
        else:
            error = error or "status"
            now = datetime.now(UTC)
            if now >= outgoing.retry_until:
                status = DeliveryStatus.FAILED
            else:
                # The last retry comes at retry_until at the latest, rather than not at all.
                delay = retry_delay(self._retry_base_s, outgoing.attempts + 1)
                next_attempt_at = min(now + timedelta(seconds=delay), outgoing.retry_until)
                status = DeliveryStatus.PENDING
                wait = (next_attempt_at - now).total_seconds()
                asyncio.get_running_loop().call_later(wait, self._wake.set)
        async with self._db.as_workspace(workspace) as conn:
            repo = DeliveryRepository(conn, workspace=workspace)
            await repo.record_attempt(
                outgoing.delivery_id,
                attempted_at=attempted_at,
                status_code=status_code,
                duration_ms=duration_ms,
                error=error,
                status=status,
                next_attempt_at=next_attempt_at,
            )
            if status_code == 410:
                await repo.disable_endpoint_of(outgoing.delivery_id, GONE_REASON)
        log.info(
            "webhook delivery %s: %s (%s)", outgoing.delivery_id, status, status_code or error or "no answer"
        )

    async def _post(self, target: Target, outgoing: Outgoing, at: datetime) -> int:
        headers = signed_headers(outgoing.delivery_id, outgoing.secret, outgoing.body, at)
        async with (
            httpx.AsyncClient(
                transport=PinnedTransport(target, self._ssl),
                follow_redirects=False,
                timeout=TIMEOUT_S,
                trust_env=False,
            ) as client,
            client.stream("POST", target.url, content=outgoing.body.encode(), headers=headers) as response,
        ):
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read >= MAX_RESPONSE_BYTES:
                    break  # enough: what a receiver says beyond this is not kept, nor waited for
            return response.status_code

    async def _purge(self) -> None:
        while True:
            try:
                # The dispatcher role: bodies of every workspace's week-old deliveries are erased, one
                # transaction per batch (no long transaction, and what is done stays done).
                while True:
                    async with self._db.as_dispatcher() as conn:
                        if not await purge_bodies(conn):
                            break
            except Exception as exc:
                if classify(exc) is None:
                    log.exception("outbound bodies not purged")
                else:
                    log.warning("outbound bodies not purged: database unavailable")
            await asyncio.sleep(PURGE_INTERVAL_S)
