"""Access-token verification with PyJWT: route by exact `iss`, pinned algorithms, provider
keys, every rejection the README lists, and a bounded cache of verified claims.

This package stops at token → `Claims`; who the claims belong to is the identity service's business.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jwt

from service.auth.keys import KeysUnavailable
from service.auth.profile import OrgContext, ProviderProfile

logger = logging.getLogger("routebook.auth")

MAX_TOKEN_BYTES = 16 * 1024
# Header members that would let the token choose its own key: never honoured, never fetched.
_KEY_CARRYING_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c"})
_REQUIRED_CLAIMS = ["exp", "sub"]
# 9999-12-31T23:59:59Z: a later NumericDate has no datetime, and no provider issues one.
_MAX_TIMESTAMP = 253_402_300_799
# What the `users` and `revoked_sessions` rows can hold (a btree entry, text without NUL): a signed
# claim beyond these would fail in PostgreSQL on every request, so it is refused here instead.
MAX_SUBJECT_LENGTH = 255
MAX_EMAIL_LENGTH = 320

__all__ = ["Claims", "InvalidToken", "KeysUnavailable", "OrgContext", "TokenVerifier"]


@dataclass(frozen=True, slots=True)
class Claims:
    """A verified token, reduced to what Routebook uses; `claims` holds the raw payload."""

    provider: str
    subject: str
    issuer: str
    session_id: str | None
    # Global: only from claims an end user cannot set.
    roles: tuple[str, ...]
    permissions: tuple[str, ...]
    # The organisation the token acts in, if any: never satisfies a global check.
    org: OrgContext | None
    email: str | None
    expires_at: float
    claims: Mapping[str, Any]
    # From `iat`, when the token has one: with expires_at, the lifetime the issuer granted.
    issued_at: float | None = None


class InvalidToken(Exception):
    """The token is not acceptable. `cause` is for a debug log; clients get one generic 401."""

    def __init__(self, cause: str) -> None:
        self.cause = cause
        super().__init__(cause)


@dataclass(frozen=True, slots=True)
class _Cached:
    """A verified token, served again while a fresh verification would accept it as well."""

    claims: Claims
    profile: ProviderProfile
    # The key set the token was verified against: a hit is served only while it is still the held one.
    generation: int
    # [not_before, expires): where the time checks of jwt.decode pass without the leeway's help at
    # the end, so a hit never accepts what a fresh decode would refuse, even if the clock went back.
    not_before: float
    expires: float


def _digest(token: str) -> bytes:
    """The cache's key for a token: a SHA-256 digest, so the cache holds no bearer credential (a memory
    dump of the process shows no token that still works), every entry has the same small key, and a
    token matches only itself."""
    # surrogatepass: any str has a digest; a token that is not ASCII is refused, never cached.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenVerifier:
    """Verifies bearer tokens of the configured providers."""

    def __init__(
        self,
        profiles: Sequence[ProviderProfile],
        *,
        leeway: int,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._profiles = tuple(profiles)
        self._by_issuer = {issuer: p for p in self._profiles for issuer in p.issuers}
        self._names = tuple(p.name for p in self._profiles)
        self._leeway = leeway
        self._cache_size = cache_size
        # Digest of the token (`_digest`) → what verifying it found.
        self._cache: dict[bytes, _Cached] = {}

    @property
    def provider_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def profiles(self) -> tuple[ProviderProfile, ...]:
        return self._profiles

    @property
    def ready(self) -> bool:
        """Every provider holds keys; a provider without keys is nudged to fetch again."""
        # A Supabase project on the legacy shared secret publishes an empty JWKS: its
        # secret alone makes it able to verify.
        missing = [p for p in self._profiles if not (p.keys.ready or p.hmac_secret is not None)]
        for profile in missing:
            # /ready polls this: without a nudge, a provider down at startup would stay
            # unready until a request happened to need its keys.
            profile.keys.request_refresh()
        return not missing

    async def aclose(self) -> None:
        """Stop background key fetches (before the HTTP client closes)."""
        for profile in self._profiles:
            await profile.keys.aclose()

    async def start(self) -> None:
        """Prefetch every provider's keys; a provider that is down does not stop startup."""
        # Concurrently: one slow provider must not delay the others' keys.
        await asyncio.gather(*(profile.keys.prefetch() for profile in self._profiles))

    async def verify(self, token: str) -> Claims:
        """The token's claims; raises InvalidToken, or KeysUnavailable when keys cannot be had."""
        key = _digest(token)
        cached = self._cache.get(key)
        if cached is not None:
            # The hot path: an SPA sends the same token for its whole lifetime. A hit never reaches
            # get_key, so it asks the key source itself whether the key set it was verified against
            # is still the one held (and usable), which also starts the refresh that is due.
            keys = cached.profile.keys
            if cached.not_before <= self._clock() < cached.expires and keys.still_holds(cached.generation):
                return cached.claims
            del self._cache[key]
        try:
            entry = await self._verify(token)
        except InvalidToken as exc:
            logger.debug("token rejected: %s", exc.cause)
            raise
        self._remember(key, entry)
        return entry.claims

    def _remember(self, key: bytes, entry: _Cached) -> None:
        # Only a verified token gets here: a refused one is never remembered, so a flood of bad tokens
        # costs its sender a verification each and cannot push anyone's entry out.
        if self._cache_size == 0 or not entry.not_before <= self._clock() < entry.expires:
            return  # within the leeway only: each request is verified afresh
        while len(self._cache) >= self._cache_size:
            # Oldest insertion first: cheap, and tokens are short-lived anyway.
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = entry

    async def _verify(self, token: str) -> _Cached:
        _check_shape(token)
        header, unverified = _parse_unverified(token)
        alg = _check_header(header)
        profile = self._route(unverified)
        if alg not in profile.algorithms:
            raise InvalidToken(f"alg {alg} not allowed for {profile.name}")
        key = await self._key(profile, header, alg)
        # Read after the (possibly fetching) await: the generation of the set the key came from.
        generation = profile.keys.generation
        payload = self._decode(token, key, alg, profile, unverified["iss"])
        reason = profile.refusal(payload)
        if reason is not None:
            raise InvalidToken(reason)
        claims = _claims(profile, payload)
        _check_storable(claims)
        return _Cached(claims, profile, generation, self._not_before(payload), float(int(payload["exp"])))

    def _not_before(self, payload: Mapping[str, Any]) -> float:
        """The earliest time jwt.decode accepts the token: its `nbf` and `iat` (as PyJWT reads them,
        truncated to integers) less the leeway."""
        times = [int(payload[name]) for name in ("nbf", "iat") if name in payload]
        return float(max(times) - self._leeway) if times else float("-inf")

    def _route(self, unverified: Mapping[str, Any]) -> ProviderProfile:
        issuer = unverified.get("iss")
        # Only a string can route; a list, or a prefix/suffix of an issuer, matches nothing.
        profile = self._by_issuer.get(issuer) if isinstance(issuer, str) else None
        if profile is None:
            raise InvalidToken("issuer not configured")
        return profile

    async def _key(self, profile: ProviderProfile, header: Mapping[str, Any], alg: str) -> Any:
        if alg == "HS256":
            # Pinned for Supabase only when SUPABASE_JWT_SECRET is set; the key is that
            # secret and nothing the token names (its kid is irrelevant).
            if profile.hmac_secret is None:
                raise InvalidToken("HS256 without a configured secret")
            return profile.hmac_secret
        kid = header.get("kid")
        key = await profile.keys.get_key(kid, alg)
        if key is None:
            raise InvalidToken(f"no {profile.name} key for this kid and alg {alg}")
        return key

    def _decode(
        self, token: str, key: Any, alg: str, profile: ProviderProfile, issuer: str
    ) -> dict[str, Any]:
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=issuer,
                audience=profile.audience,
                leeway=self._leeway,
                options={"require": _REQUIRED_CLAIMS, "enforce_minimum_key_length": True},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"{type(exc).__name__}: {exc}") from None
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidToken(f"undecodable token ({type(exc).__name__})") from None
        _check_types(payload)
        return payload


def _check_shape(token: str) -> None:
    if not isinstance(token, str) or not token:
        raise InvalidToken("empty token")
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidToken("token over 16 KiB")
    if not token.isascii():
        raise InvalidToken("non-ASCII token")
    # Exactly a compact JWS; a five-part JWE (or anything else) is refused here.
    if token.count(".") != 2:
        raise InvalidToken("not a three-part JWS")


def _parse_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    # Read once without verification, only to pick the provider and key; nothing from
    # here is trusted until jwt.decode has checked the signature.
    try:
        parts = jwt.api_jwt.decode_complete(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        # PyJWT's message names the part at fault (header, padding, crit), never the token.
        raise InvalidToken(f"malformed token ({type(exc).__name__}: {str(exc)[:200]})") from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidToken(f"malformed token ({type(exc).__name__})") from None
    return parts["header"], parts["payload"]


def _check_header(header: Mapping[str, Any]) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg or alg.lower() == "none":
        raise InvalidToken("alg missing or none")
    embedded = _KEY_CARRYING_HEADERS.intersection(header)
    if embedded:
        raise InvalidToken(f"key-carrying header {sorted(embedded)}")
    # We implement no JWS extension (not even RFC 7797 b64), so any `crit` is unknown.
    if "crit" in header or "b64" in header:
        raise InvalidToken("critical header extension")
    if "enc" in header or "zip" in header:
        raise InvalidToken("JWE header")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise InvalidToken("kid not a string")
    return alg


def _check_types(payload: Mapping[str, Any]) -> None:
    subject = payload.get("sub")
    if not isinstance(subject, str) or not subject.strip():
        raise InvalidToken("sub empty or not a string")
    for name in ("exp", "iat"):
        if name in payload and not _is_timestamp(payload[name]):
            raise InvalidToken(f"{name} not a timestamp")


def _is_text(value: str) -> bool:
    """Encodable as UTF-8: JSON text allows a lone surrogate (`"\\ud800"`), UTF-8 does not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _storable(value: str, limit: int) -> bool:
    """No NUL (PostgreSQL text cannot hold it), no lone surrogate (not UTF-8), within `limit`."""
    return len(value) <= limit and "\x00" not in value and _is_text(value)


def _check_storable(claims: Claims) -> None:
    if not _storable(claims.subject, MAX_SUBJECT_LENGTH):
        raise InvalidToken("sub is not storable (length, NUL or surrogate)")
    if claims.session_id is not None and not _storable(claims.session_id, MAX_SUBJECT_LENGTH):
        raise InvalidToken("session id is not storable (length, NUL or surrogate)")
    if claims.email is not None and not _storable(claims.email, MAX_EMAIL_LENGTH):
        raise InvalidToken("email is not storable (length, NUL or surrogate)")
    # Not stored, but answered in /users/me: a string UTF-8 cannot encode would fail the response
    # (a 500) after the user row was written. Only what we read is checked; other claims may hold anything.
    shown = [*claims.roles, *claims.permissions]
    if claims.org is not None:
        shown += [value for value in (claims.org.id, claims.org.role) if value is not None]
        shown += claims.org.permissions
    if not all(map(_is_text, shown)):
        raise InvalidToken("a role, permission or organisation claim is not UTF-8 text")


def _is_timestamp(value: Any) -> bool:
    # PyJWT accepts numeric strings ("9999999999") and ints no float can hold (10**400);
    # NaN fails the range check. A provider sends none of these.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0 <= value <= _MAX_TIMESTAMP


def _claims(profile: ProviderProfile, payload: dict[str, Any]) -> Claims:
    return Claims(
        provider=profile.name,
        subject=payload["sub"],
        issuer=payload["iss"],
        session_id=profile.session_id(payload),
        roles=profile.roles(payload),
        permissions=profile.permissions(payload),
        org=profile.org(payload),
        email=profile.email(payload),
        expires_at=float(payload["exp"]),
        # Read-only: the same object is served from the cache to every later request.
        claims=MappingProxyType(payload),
        issued_at=float(payload["iat"]) if "iat" in payload else None,
    )
