"""A provider's remote key set: an async, single-flight JWKS cache (the keys themselves: `keys.py`).

Modelled on `jose`'s remote key set and Go's `keyfunc`: one in-flight fetch however many requests
need it, old keys kept serving while the endpoint fails, and a cooldown on unknown-`kid` refetches
so forged kids cannot make us hammer the provider.

A forged kid and the first token of a genuine rotation look the same until the key set says which
it is, so whatever bounds the one bounds the other. Hence the cooldown is short (5 s by default):
under any flood of forged kids at most one unknown-kid fetch per cooldown per provider, and a
rotation is honoured at the latest with the first fetch the cooldown allows. A token whose kid is
unknown while the cooldown runs is not refused outright: it waits for that fetch (one fetch shared
by every waiter), so a rotation's first tokens verify instead of signing their users out. Waiting
is bounded in time (`MAX_ROTATION_WAIT`) and in number (`MAX_ROTATION_WAITERS`): a flood cannot
hold an unbounded number of requests open, it can only make its own requests slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable

import httpx
import jwt

from service.auth.keys import InvalidKeySet, KeySet, KeysUnavailable, parse_jwks
from service.core import metrics

logger = logging.getLogger("routebook.auth.jwks")

MAX_JWKS_BYTES = 1024 * 1024
# Cache-Control may shorten the refresh interval, but never below this (a provider
# answering max-age=0 must not turn every request into a fetch).
MIN_REFRESH_SECONDS = 60.0
# After a failed fetch with no usable keys, retry no sooner than this: requests get a
# fast 503 instead of each one waiting for a dead endpoint.
MAX_FAILURE_BACKOFF = 5.0
# An unknown kid inside the cooldown waits for the fetch at its end only when that fetch is at
# most this far away (a longer JWKS_REFRESH_COOLDOWN refuses such tokens at once, as before)...
MAX_ROTATION_WAIT = 5.0
# ...and only while fewer than this many requests of the provider already wait; later ones are
# refused at once (a real rotation among them verifies on its retry, after that fetch).
MAX_ROTATION_WAITERS = 256

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?([0-9]{1,12})\"?\s*(?:,|$)", re.IGNORECASE | re.ASCII)


class _FetchFailed(Exception):
    def __init__(self, message: str, outcome: str = "invalid") -> None:
        super().__init__(message)
        self.outcome = outcome


def _fetch_outcome(exc: Exception) -> str:
    """A failed fetch's outcome label: a short fixed word."""
    if isinstance(exc, _FetchFailed):
        return exc.outcome
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.HTTPError | OSError):
        return "network_error"
    return "error"


def cache_control_max_age(value: str | None) -> float | None:
    """The `max-age` of a Cache-Control header, or None."""
    if not value:
        return None
    match = _MAX_AGE.search(value)
    return float(match.group(1)) if match else None


class JWKSCache:
    """One provider's remote key set: single-flight fetches, cooldown, stale-while-failing.

    `clock` and `sleep` are injectable together so tests can drive time; `sleep` is only used to
    wait out the remaining cooldown for an unknown kid.
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        http: httpx.AsyncClient,
        max_age: float,
        cooldown: float,
        max_stale: float,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self.url = url
        self._http = http
        self._max_age = max_age
        self._cooldown = cooldown
        self._max_stale = max_stale
        self._timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self._keys = KeySet(())
        self._generation = 0
        self._last_success: float | None = None
        self._last_attempt: float | None = None
        # Fetches started so far: tells a waiter whether one began after it started waiting.
        self._attempts = 0
        self._last_failed = False
        self._refresh_at = 0.0
        self._inflight: asyncio.Task[bool] | None = None
        # The one fetch scheduled for the end of the cooldown, shared by every unknown kid waiting.
        self._after_cooldown: asyncio.Task[None] | None = None
        self._waiters = 0

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def ready(self) -> bool:
        return self._usable(self._clock())

    async def prefetch(self) -> None:
        await self.refresh()

    def request_refresh(self) -> None:
        """Start a background fetch when none is running and none is needed soon anyway."""
        if self._usable(self._clock()):
            return
        if self._inflight is None and self._may_retry(self._clock()):
            self._start()

    def still_holds(self, generation: int) -> bool:
        """Whether the key set of `generation` is still the one held, and still usable; starts a
        background fetch when the held keys are past their max age.

        For callers that skip `get_key` (a verified-claims cache hit): without the fetch, a key the
        provider removed would stay trusted until some cache miss happened to fetch; without the
        checks, a token verified under a key set since replaced, or held past JWKS_MAX_STALE, would.
        """
        now = self._clock()
        # One comparison on the hot path; the rest only once a refresh is due.
        if now >= self._refresh_at and self._last_success is not None:
            self._start_if_allowed(now)
            return generation == self._generation and self._usable(now)
        return generation == self._generation

    async def aclose(self) -> None:
        """Cancel fetches in flight or scheduled (shutdown): the HTTP client is about to close."""
        for task in (self._after_cooldown, self._inflight):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._after_cooldown = self._inflight = None

    async def get_key(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        now = self._clock()
        if not self._usable(now):
            return await self._get_key_cold(kid, alg, now)
        if now >= self._refresh_at:
            # Keys are still valid: refresh in the background and answer from them meanwhile.
            self._start_if_allowed(now)
        key = self._keys.find(kid, alg)
        if key is not None or (kid is not None and self._keys.knows(kid)):
            # A known kid with an incompatible algorithm is a forgery, not a rotation.
            return key
        return await self._get_unknown_key(kid, alg)

    async def _get_unknown_key(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        """A kid we do not hold: a rotation or a forgery, told apart only by a fresh key set."""
        if self._inflight is not None:
            # Joining a fetch already under way costs nothing, and it may bring the new key.
            await self.refresh()
            key = self._keys.find(kid, alg)
            if key is not None:
                return key
        left = self._cooldown_left(self._clock())
        if left <= 0:
            await self.refresh()
            return self._keys.find(kid, alg)
        if left > MAX_ROTATION_WAIT or self._waiters >= MAX_ROTATION_WAITERS:
            return None
        self._waiters += 1
        try:
            # shield: a waiter whose client went away must not cancel the others' fetch.
            await asyncio.shield(self._fetch_after_cooldown())
        finally:
            self._waiters -= 1
        return self._keys.find(kid, alg)

    def _fetch_after_cooldown(self) -> asyncio.Task[None]:
        if self._after_cooldown is None:
            self._after_cooldown = asyncio.get_running_loop().create_task(
                self._when_cooled(self._attempts), name=f"jwks-{self.name}-after-cooldown"
            )
        return self._after_cooldown

    async def _when_cooled(self, attempts: int) -> None:
        try:
            # Any fetch started meanwhile (a max-age refresh, say) already serves the waiters.
            while self._attempts == attempts and (left := self._cooldown_left(self._clock())) > 0:
                await self._sleep(left)
            if self._inflight is not None or self._attempts == attempts:
                await self.refresh()
        finally:
            self._after_cooldown = None

    async def _get_key_cold(self, kid: str | None, alg: str, now: float) -> jwt.PyJWK | None:
        if self._inflight is not None or self._may_retry(now):
            await self.refresh()
        if not self._usable(self._clock()):
            raise KeysUnavailable(f"no usable keys for {self.name}")
        return self._keys.find(kid, alg)

    async def refresh(self) -> bool:
        """Fetch now (joining a fetch already in flight); True when keys were stored."""
        task = self._inflight or self._start()
        # shield: a caller that is cancelled (client went away) must not cancel the
        # fetch other callers are waiting on.
        return await asyncio.shield(task)

    def _start(self) -> asyncio.Task[bool]:
        # Recorded here, not when the task first runs: the cooldown starts with the decision.
        self._last_attempt = self._clock()
        self._attempts += 1
        task = asyncio.get_running_loop().create_task(self._fetch_and_store(), name=f"jwks-{self.name}")
        self._inflight = task
        return task

    def _start_if_allowed(self, now: float) -> None:
        if self._inflight is None and self._may_retry(now):
            self._start()

    def _cooldown_left(self, now: float) -> float:
        if self._last_attempt is None:
            return 0.0
        return self._last_attempt + self._cooldown - now

    def _usable(self, now: float) -> bool:
        if self._last_success is None or not self._keys:
            return False
        return now <= max(self._refresh_at, self._last_success + self._max_stale)

    def _may_retry(self, now: float) -> bool:
        if self._last_attempt is None or not self._last_failed:
            return True
        return now - self._last_attempt >= min(self._cooldown, MAX_FAILURE_BACKOFF)

    async def _fetch_and_store(self) -> bool:
        try:
            keys, max_age = await self._fetch()
        except Exception as exc:  # every failure mode ends the same way: keep old keys
            self._last_failed = True
            metrics.jwks_fetch(self.name, _fetch_outcome(exc))
            logger.warning(
                "JWKS fetch for %s from %s failed (%s); %s",
                self.name,
                self.url,
                _describe(exc),
                "serving cached keys" if self._keys else "no keys held",
            )
            return False
        finally:
            self._inflight = None
        metrics.jwks_fetch(self.name, "ok")
        self._store(keys, max_age)
        return True

    def _store(self, keys: KeySet, max_age: float | None) -> None:
        now = self._clock()
        if keys.fingerprint != self._keys.fingerprint:
            self._generation += 1
        self._keys = keys
        self._last_failed = False
        self._last_success = now
        interval = self._max_age if max_age is None else min(self._max_age, max_age)
        self._refresh_at = now + max(interval, min(MIN_REFRESH_SECONDS, self._max_age))

    async def _fetch(self) -> tuple[KeySet, float | None]:
        # asyncio.timeout bounds the whole exchange; httpx's timeout alone is per read,
        # so a server dripping one byte a second would never trip it.
        async with asyncio.timeout(self._timeout):
            async with self._http.stream(
                "GET",
                self.url,
                headers={"Accept": "application/json"},
                timeout=self._timeout,
                follow_redirects=False,
            ) as response:
                if response.status_code != 200:
                    raise _FetchFailed(f"HTTP {response.status_code}", "http_error")
                body = await _read_bounded(response)
                max_age = cache_control_max_age(response.headers.get("cache-control"))
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise _FetchFailed("response is not JSON") from exc
        keys = parse_jwks(document, source=self.name)
        if not keys:
            raise _FetchFailed("no usable signature keys in the key set")
        return keys, max_age


async def _read_bounded(response: httpx.Response) -> bytes:
    declared = response.headers.get("content-length")
    # isascii: str.isdigit() also accepts "²", which int() refuses; an unusable length is ignored
    # (the body is counted as it arrives either way).
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > MAX_JWKS_BYTES:
        raise _FetchFailed("response too large")
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_JWKS_BYTES:
            raise _FetchFailed("response too large")
    return bytes(body)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _FetchFailed | InvalidKeySet):
        return str(exc)
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timed out"
    return type(exc).__name__
