"""Signing keys: which JWKs are usable, a key set looked up by kid and algorithm, fixed keys.

Everything here is synchronous and local; fetching a provider's JWKS is `service.auth.jwks`.
A key that contradicts the token's algorithm is never used, and a key set only ever holds
public signature keys (no `oct`, no private members, no weak RSA).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

logger = logging.getLogger("routebook.auth.keys")

MIN_RSA_BITS = 2048

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


class InvalidKeySet(Exception):
    """A document that is not a JWKS at all (a fetch that returns one has failed)."""


class KeySource(Protocol):
    """What token verification needs from a provider's keys."""

    @property
    def ready(self) -> bool: ...

    @property
    def generation(self) -> int: ...

    async def get_key(self, kid: str | None, alg: str) -> jwt.PyJWK | None: ...

    async def prefetch(self) -> None: ...

    def request_refresh(self) -> None: ...

    def still_holds(self, generation: int) -> bool: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Key:
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


class KeySet:
    """An immutable set of usable keys, looked up by kid and algorithm."""

    def __init__(self, keys: Iterable[Key]) -> None:
        self.keys = tuple(keys)
        self._by_kid: dict[str | None, list[Key]] = {}
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


def parse_jwks(document: Any, *, source: str) -> KeySet:
    """Usable signature keys of a JWKS document; unusable members are skipped, not fatal."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise InvalidKeySet("not a JWKS document")
    keys = [key for member in document["keys"] if (key := parse_member(member, source)) is not None]
    return KeySet(keys)


def parse_member(member: Any, source: str) -> Key | None:
    """One JWKS member as a usable key, or None (logged at debug) when it may not be used."""
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
                return Key(kid if isinstance(kid, str) else None, member, jwk)
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


class StaticKeys:
    """Fixed keys (CLERK_JWT_KEY, the dev issuer): the KeySource interface, never a fetch."""

    def __init__(self, keys: Iterable[Mapping[str, Any]]) -> None:
        parsed: list[Key] = []
        for key in keys:
            member = parse_member(dict(key), "static keys")
            if member is None:
                raise ValueError("static key refused (weak, private, symmetric or malformed)")
            parsed.append(member)
        if not parsed:
            raise ValueError("StaticKeys needs at least one key")
        self._keys = KeySet(parsed)

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

    def still_holds(self, generation: int) -> bool:
        return True

    async def aclose(self) -> None:
        return None

    async def get_key(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        key = self._keys.find(kid, alg)
        if key is None and len(self._keys) == 1 and self._keys.keys[0].kid is None:
            # A configured key without kid (a bare PEM) serves whatever kid the token names.
            return self._keys.find(None, alg)
        return key
