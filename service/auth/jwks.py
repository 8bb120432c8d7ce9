"""Provider signing keys: an async, single-flight JWKS cache and a fixed-key source.

Modelled on `jose`'s remote key set and Go's `keyfunc`: one in-flight fetch however many
requests need it, a cooldown on unknown-`kid` refetches (so forged kids cannot make us
hammer the provider), old keys kept serving while the endpoint fails, and keys that
contradict the token's algorithm never used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

logger = logging.getLogger("routebook.auth.jwks")

MAX_JWKS_BYTES = 1024 * 1024
MIN_RSA_BITS = 2048
# Cache-Control may shorten the refresh interval, but never below this (a provider
# answering max-age=0 must not turn every request into a fetch).
MIN_REFRESH_SECONDS = 60.0
# After a failed fetch with no usable keys, retry no sooner than this: requests get a
# fast 503 instead of each one waiting for a dead endpoint.
MAX_FAILURE_BACKOFF = 5.0

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)

# What a token's `alg` demands of the key: (kty, crv or None when the kty has none).
_ALG_KEY_TYPE: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", "Ed25519"),
}


class KeysUnavailable(Exception):
    """No usable keys are held and fetching them failed (the app answers 503)."""


class KeySource(Protocol):
    """What token verification needs from a provider's keys."""

    @property
    def ready(self) -> bool: ...

    @property
    def generation(self) -> int: ...

    async def get_key(self, kid: str | None, alg: str) -> jwt.PyJWK | None: ...

    async def prefetch(self) -> None: ...

    def request_refresh(self) -> None: ...

    def refresh_if_due(self) -> None: ...

    async def aclose(self) -> None: ...


class _FetchFailed(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Key:
    """One usable JWK: its raw members (to rebind the algorithm) and its PyJWK."""

    kid: str | None
    data: Mapping[str, Any]
    jwk: jwt.PyJWK

    def compatible(self, alg: str) -> bool:
        wanted = _ALG_KEY_TYPE.get(alg)
        if wanted is None:
            return False
        kty, crv = wanted
        if self.data.get("kty") != kty:
            return False
        if crv is not None and self.data.get("crv") != crv:
            return False
        declared = self.data.get("alg")
        return declared is None or declared == alg

    def for_alg(self, alg: str) -> jwt.PyJWK:
        # PyJWK binds one algorithm; a JWK without `alg` (RSA → RS256 by default) may
        # legitimately serve PS256 too, so rebind rather than fail.
        if self.jwk.algorithm_name == alg:
            return self.jwk
        return jwt.PyJWK(dict(self.data), algorithm=alg)


class _KeySet:
    """An immutable set of usable keys, looked up by kid and algorithm."""

    def __init__(self, keys: Iterable[_Key]) -> None:
        self.keys = tuple(keys)
        self._by_kid: dict[str | None, list[_Key]] = {}
        for key in self.keys:
            self._by_kid.setdefault(key.kid, []).append(key)
        self.fingerprint = frozenset(json.dumps(dict(k.data), sort_keys=True) for k in self.keys)
        self._bound: dict[tuple[str | None, str], jwt.PyJWK | None] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def knows(self, kid: str | None) -> bool:
        return kid in self._by_kid if kid is not None else bool(self.keys)

    def find(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        if kid is not None and kid not in self._by_kid:
            # Not memoized: random forged kids must not grow the memo without bound.
            return None
        memo = (kid, alg)
        if memo in self._bound:
            return self._bound[memo]
        found = self._find(kid, alg)
        self._bound[memo] = found
        return found

    def _find(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        if kid is None:
            # Without a kid, use the only compatible key; guessing among several is not safe.
            candidates = [key for key in self.keys if key.compatible(alg)]
        else:
            candidates = [key for key in self._by_kid.get(kid, ()) if key.compatible(alg)]
        if len(candidates) != 1:
            return None
        try:
            return candidates[0].for_alg(alg)
        except jwt.PyJWTError:
            return None


def parse_jwks(document: Any, *, source: str) -> _KeySet:
    """Usable signature keys of a JWKS document; unusable members are skipped, not fatal."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise _FetchFailed("not a JWKS document")
    keys = [key for member in document["keys"] if (key := _parse_member(member, source)) is not None]
    return _KeySet(keys)


def _parse_member(member: Any, source: str) -> _Key | None:
    if not isinstance(member, dict):
        return None
    reason = _refusal(member)
    if reason is None:
        try:
            jwk = jwt.PyJWK(member)
        except jwt.PyJWTError as exc:
            reason = f"unparseable ({type(exc).__name__})"
        else:
            reason = _weak_key(jwk.key)
            if reason is None:
                kid = member.get("kid")
                return _Key(kid if isinstance(kid, str) else None, member, jwk)
    logger.debug("skipping JWK from %s (kid=%r): %s", source, member.get("kid"), reason)
    return None


def _refusal(member: Mapping[str, Any]) -> str | None:
    kty = member.get("kty")
    if kty not in {"RSA", "EC", "OKP"}:
        # `oct` would turn a public key set into shared secrets: refused outright.
        return f"key type {kty!r} not accepted"
    if member.get("use", "sig") != "sig":
        return "not a signature key"
    if "d" in member:
        return "private key material in a public key set"
    alg = member.get("alg")
    if alg is not None and alg not in _ALG_KEY_TYPE:
        return f"algorithm {alg!r} not accepted"
    ops = member.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return "key_ops does not allow verify"
    return None


def _weak_key(key: Any) -> str | None:
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        return f"RSA key of {key.key_size} bits"
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        return f"unsupported key object {type(key).__name__}"
    return None


def cache_control_max_age(value: str | None) -> float | None:
    """The `max-age` of a Cache-Control header, or None."""
    if not value:
        return None
    match = _MAX_AGE.search(value)
    return float(match.group(1)) if match else None


class JWKSCache:
    """One provider's remote key set: single-flight fetches, cooldown, stale-while-failing."""

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
    ) -> None:
        self.name = name
        self.url = url
        self._http = http
        self._max_age = max_age
        self._cooldown = cooldown
        self._max_stale = max_stale
        self._timeout = timeout
        self._clock = clock
        self._keys = _KeySet(())
        self._generation = 0
        self._last_success: float | None = None
        self._last_attempt: float | None = None
        self._last_failed = False
        self._refresh_at = 0.0
        self._inflight: asyncio.Task[bool] | None = None

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

    def refresh_if_due(self) -> None:
        """Start a background fetch when the held keys are past their max age.

        For callers that skip `get_key` (a verified-claims cache hit): without it, a key the
        provider removed would stay trusted until some cache miss happened to fetch.
        """
        now = self._clock()
        # One comparison on the hot path; the rest only once a refresh is due.
        if now >= self._refresh_at and self._last_success is not None:
            self._start_if_allowed(now)

    async def aclose(self) -> None:
        """Cancel a fetch in flight (shutdown): the HTTP client is about to close."""
        task, self._inflight = self._inflight, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

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
        if self._last_attempt is not None and now - self._last_attempt < self._cooldown:
            return None
        await self.refresh()
        return self._keys.find(kid, alg)

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
        task = asyncio.get_running_loop().create_task(self._fetch_and_store(), name=f"jwks-{self.name}")
        self._inflight = task
        return task

    def _start_if_allowed(self, now: float) -> None:
        if self._inflight is None and self._may_retry(now):
            self._start()

    def _usable(self, now: float) -> bool:
        if self._last_success is None or not self._keys:
            return False
        return now <= max(self._refresh_at, self._last_success + self._max_stale)

    def _may_retry(self, now: float) -> bool:
        if self._last_attempt is None or not self._last_failed:
            return True
        return now - self._last_attempt >= min(self._cooldown, MAX_FAILURE_BACKOFF)

    async def _fetch_and_store(self) -> bool:
        self._last_attempt = self._clock()
        try:
            keys, max_age = await self._fetch()
        except Exception as exc:  # every failure mode ends the same way: keep old keys
            self._last_failed = True
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
        self._store(keys, max_age)
        return True

    def _store(self, keys: _KeySet, max_age: float | None) -> None:
        now = self._clock()
        if keys.fingerprint != self._keys.fingerprint:
            self._generation += 1
        self._keys = keys
        self._last_failed = False
        self._last_success = now
        interval = self._max_age if max_age is None else min(self._max_age, max_age)
        self._refresh_at = now + max(interval, min(MIN_REFRESH_SECONDS, self._max_age))

    async def _fetch(self) -> tuple[_KeySet, float | None]:
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
                    raise _FetchFailed(f"HTTP {response.status_code}")
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
    if declared is not None and declared.isdigit() and int(declared) > MAX_JWKS_BYTES:
        raise _FetchFailed("response too large")
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_JWKS_BYTES:
            raise _FetchFailed("response too large")
    return bytes(body)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _FetchFailed):
        return str(exc)
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timed out"
    return type(exc).__name__


class StaticKeys:
    """Fixed keys (CLERK_JWT_KEY, the dev issuer): the JWKSCache interface, never a fetch."""

    def __init__(self, keys: Iterable[Mapping[str, Any]]) -> None:
        parsed: list[_Key] = []
        for key in keys:
            member = _parse_member(dict(key), "static keys")
            if member is None:
                raise ValueError("static key refused (weak, private, symmetric or malformed)")
            parsed.append(member)
        if not parsed:
            raise ValueError("StaticKeys needs at least one key")
        self._keys = _KeySet(parsed)

    @classmethod
    def from_pem(cls, pem: str | bytes, *, kid: str | None = None) -> StaticKeys:
        """A single PEM public key (Clerk's "JWKS Public Key"); without kid it matches any kid."""
        raw = pem.encode() if isinstance(pem, str) else pem
        # Some hosts store the PEM with literal "\n" in one line; undo that.
        raw = raw.replace(b"\\n", b"\n").strip()
        public_key = load_pem_public_key(raw)
        data: dict[str, Any]
        if isinstance(public_key, rsa.RSAPublicKey):
            data = RSAAlgorithm.to_jwk(public_key, as_dict=True)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            data = ECAlgorithm.to_jwk(public_key, as_dict=True)
        else:
            raise ValueError("PEM key must be an RSA or EC public key")
        data.pop("kid", None)
        if kid is not None:
            data["kid"] = kid
        return cls([data])

    @property
    def ready(self) -> bool:
        return True

    @property
    def generation(self) -> int:
        return 0

    async def prefetch(self) -> None:
        return None

    def request_refresh(self) -> None:
        return None

    def refresh_if_due(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def get_key(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        key = self._keys.find(kid, alg)
        if key is None and len(self._keys) == 1 and self._keys.keys[0].kid is None:
            # A configured key without kid (a bare PEM) serves whatever kid the token names.
            return self._keys.find(None, alg)
        return key
