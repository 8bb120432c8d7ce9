"""Mock identity providers: keys, a JWKS served through respx, provider-shaped tokens."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import jwt
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from service.config import Settings


class _Remove:
    def __repr__(self) -> str:
        return "REMOVE"


REMOVE: Any = _Remove()
"""Give a claim or header this value to delete it from the token."""

Kind = Literal["clerk", "supabase", "workos"]


# RSA keys take ~30 ms of CPU each to generate, and the suite asks for hundreds. They are drawn from
# a pool generated on first use, in turn: consecutive draws never repeat a key within _RSA_POOL draws,
# so every key a test asks for differs from the others it holds (a test needs a handful).
_RSA_POOL = 48
_rsa_pools: dict[int, list[rsa.RSAPrivateKey]] = {}
_rsa_draws: dict[int, int] = {}


def _rsa_key(bits: int) -> rsa.RSAPrivateKey:
    pool = _rsa_pools.setdefault(bits, [])
    draw = _rsa_draws.get(bits, 0)
    _rsa_draws[bits] = draw + 1
    if draw < _RSA_POOL:
        pool.append(rsa.generate_private_key(public_exponent=65537, key_size=bits))
    return pool[draw % _RSA_POOL]


@dataclass(frozen=True)
class SigningKey:
    """A private key with its kid and algorithm; `public_jwk()` is what the JWKS serves."""

    private: Any
    kid: str
    alg: str

    @classmethod
    def generate(cls, alg: str = "RS256", *, kid: str | None = None, bits: int = 2048) -> SigningKey:
        private: Any
        if alg.startswith(("RS", "PS")):
            private = _rsa_key(bits)
        elif alg == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        elif alg == "ES384":
            private = ec.generate_private_key(ec.SECP384R1())
        else:
            raise ValueError(f"unsupported test algorithm {alg}")
        return cls(private, kid or f"kid_{uuid.uuid4().hex[:12]}", alg)

    def public_jwk(self, **members: Any) -> dict[str, Any]:
        public = self.private.public_key()
        algorithm = RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else ECAlgorithm
        jwk: dict[str, Any] = algorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig", **members}

    def public_pem(self) -> str:
        data: bytes = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return data.decode()


@dataclass(frozen=True)
class Org:
    """An organization membership, rendered as Clerk v2 `o` or v1 `org_*` claims."""

    id: str = "org_2abc"
    role: str = "admin"
    permissions: tuple[str, ...] = ("read", "manage")
    slug: str = "acme"


@dataclass
class MockProvider:
    """One fake provider. Build with `.clerk()`, `.supabase()` or `.workos()`."""

    kind: Kind
    issuer: str
    jwks_url: str
    alg: str
    overrides: dict[str, Any]
    keys: list[SigningKey] = field(default_factory=list)
    jwt_secret: str | None = None
    azp: str | None = None
    jwks_headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def clerk(
        cls,
        issuer: str = "https://clerk.routebook.test",
        *,
        authorized_parties: Sequence[str] = ("http://localhost:5173",),
    ) -> MockProvider:
        jwks_url = f"{issuer}/.well-known/jwks.json"
        overrides = {
            "clerk_issuer": issuer,
            "clerk_jwks_url": jwks_url,
            "clerk_authorized_parties": list(authorized_parties),
        }
        azp = authorized_parties[0] if authorized_parties else "http://localhost:5173"
        return cls("clerk", issuer, jwks_url, "RS256", overrides, [SigningKey.generate("RS256")], azp=azp)

    @classmethod
    def supabase(
        cls,
        url: str = "https://ref.supabase.test",
        *,
        alg: Literal["ES256", "RS256"] = "ES256",
        jwt_secret: str | None = None,
        allow_anonymous: bool = False,
    ) -> MockProvider:
        issuer = f"{url}/auth/v1"
        jwks_url = f"{issuer}/.well-known/jwks.json"
        overrides: dict[str, Any] = {
            "supabase_url": url,
            "supabase_jwks_url": jwks_url,
            "supabase_allow_anonymous": allow_anonymous,
        }
        if jwt_secret is not None:
            overrides["supabase_jwt_secret"] = jwt_secret
        keys = [SigningKey.generate(alg)]
        return cls("supabase", issuer, jwks_url, alg, overrides, keys, jwt_secret=jwt_secret)

    @classmethod
    def workos(cls, client_id: str = "client_01TEST", *, issuer: str | None = None) -> MockProvider:
        issuer = issuer or f"https://api.workos.com/user_management/{client_id}"
        jwks_url = f"https://api.workos.com/sso/jwks/{client_id}"
        overrides = {"workos_client_id": client_id, "workos_issuer": [issuer], "workos_jwks_url": jwks_url}
        return cls("workos", issuer, jwks_url, "RS256", overrides, [SigningKey.generate("RS256")])

    @property
    def key(self) -> SigningKey:
        """The current signing key (the newest)."""
        return self.keys[-1]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self.keys]}

    def public_pem(self) -> str:
        return self.key.public_pem()

    def settings_overrides(self) -> dict[str, Any]:
        return {"auth_providers": [self.kind], **self.overrides}

    def mock(self, router: respx.MockRouter) -> respx.Route:
        """Serve the current JWKS at `jwks_url`; `route.call_count` counts fetches."""
        return router.get(self.jwks_url).mock(side_effect=self._respond)

    def _respond(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=self.jwks(), headers=self.jwks_headers)

    def rotate(self, *, keep_old: bool = False, alg: str | None = None) -> SigningKey:
        """A new signing key with a new kid; the JWKS serves it (and the old one if kept)."""
        new = SigningKey.generate(alg or self.alg)
        self.keys = [*self.keys, new] if keep_old else [new]
        return new

    def claims(
        self,
        subject: str | None = None,
        *,
        expires_in: int | None = None,
        roles: Sequence[str] | None = None,
        org: Org | None = None,
        version: int = 2,
    ) -> dict[str, Any]:
        """The payload this provider would issue (before overrides)."""
        now = int(time.time())
        ttl = expires_in if expires_in is not None else (60 if self.kind == "clerk" else 3600)
        base: dict[str, Any] = {"iss": self.issuer, "iat": now, "exp": now + ttl}
        if self.kind == "clerk":
            base |= self._clerk_claims(subject, now, roles, org, version)
        elif self.kind == "supabase":
            base |= self._supabase_claims(subject, now, roles)
        else:
            base |= self._workos_claims(subject, roles)
        return base

    def _clerk_claims(
        self, subject: str | None, now: int, roles: Sequence[str] | None, org: Org | None, version: int
    ) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "sub": subject or f"user_{uuid.uuid4().hex[:24]}",
            "sid": f"sess_{uuid.uuid4().hex[:24]}",
            "nbf": now - 10,
            "jti": uuid.uuid4().hex[:20],
        }
        if self.azp is not None:
            claims["azp"] = self.azp
        if version == 2:
            claims |= {"v": 2, "fva": [0, -1], "pla": "u:free_user", "fea": "u:basic"}
            if org is not None:
                claims["o"] = {
                    "id": org.id,
                    "slg": org.slug,
                    "rol": org.role,
                    "per": ",".join(org.permissions),
                    "fpm": "3",
                }
        elif org is not None:
            claims |= {
                "org_id": org.id,
                "org_slug": org.slug,
                "org_role": f"org:{org.role}",
                "org_permissions": [f"org:{p}" for p in org.permissions],
            }
        if roles is not None:
            claims["metadata"] = {"roles": list(roles)}
        return claims

    def _supabase_claims(self, subject: str | None, now: int, roles: Sequence[str] | None) -> dict[str, Any]:
        app_metadata: dict[str, Any] = {"provider": "email", "providers": ["email"]}
        if roles is not None:
            app_metadata["roles"] = list(roles)
        return {
            "sub": subject or str(uuid.uuid4()),
            "aud": "authenticated",
            "role": "authenticated",
            "email": "user@example.com",
            "phone": "",
            "app_metadata": app_metadata,
            "user_metadata": {"email_verified": True},
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": now}],
            "session_id": str(uuid.uuid4()),
            "is_anonymous": False,
        }

    def _workos_claims(self, subject: str | None, roles: Sequence[str] | None) -> dict[str, Any]:
        role_list = list(roles) if roles is not None else ["member"]
        return {
            "sub": subject or f"user_01{uuid.uuid4().hex[:24].upper()}",
            "sid": f"session_01{uuid.uuid4().hex[:24].upper()}",
            "org_id": "org_01TESTORG",
            "role": role_list[0] if role_list else "member",
            "roles": role_list,
            "permissions": ["posts:read"],
            "entitlements": [],
            "feature_flags": [],
            "jti": uuid.uuid4().hex,
        }

    def token(
        self,
        subject: str | None = None,
        *,
        headers: Mapping[str, Any] | None = None,
        key: SigningKey | bytes | str | None = None,
        alg: str | None = None,
        expires_in: int | None = None,
        roles: Sequence[str] | None = None,
        org: Org | None = None,
        version: int = 2,
        claims: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> str:
        """A signed provider-shaped token.

        `overrides` (and `claims`, for names that clash with parameters) replace claims;
        `REMOVE` deletes one. `key` may be another SigningKey (kid follows it unless
        `headers` sets one) or raw HMAC key bytes/str with `alg="HS256"`.
        """
        payload = self.claims(subject, expires_in=expires_in, roles=roles, org=org, version=version)
        _apply(payload, {**(claims or {}), **overrides})
        signing = key if key is not None else self._default_key(alg)
        if isinstance(signing, SigningKey):
            private: Any = signing.private
            algorithm = alg or signing.alg
            header: dict[str, Any] = {"kid": signing.kid, "typ": "JWT"}
        else:
            private, algorithm, header = signing, alg or "HS256", {"typ": "JWT"}
        _apply(header, dict(headers or {}))
        return jwt.encode(payload, private, algorithm=algorithm, headers=header)

    def _default_key(self, alg: str | None) -> SigningKey | str:
        if alg == "HS256":
            if self.jwt_secret is None:
                raise ValueError("HS256 needs MockProvider.supabase(jwt_secret=...) or key=")
            return self.jwt_secret
        return self.key

    def api_key(self, role: Literal["anon", "service_role"] = "anon", *, iss: str = "supabase") -> str:
        """A Supabase project API key (a JWT without `sub`), signed with this provider's key."""
        now = int(time.time())
        payload = {"iss": iss, "ref": "ref", "role": role, "iat": now, "exp": now + 3600}
        if self.jwt_secret is not None:
            return jwt.encode(payload, self.jwt_secret, algorithm="HS256")
        return jwt.encode(payload, self.key.private, algorithm=self.key.alg, headers={"kid": self.key.kid})


class HangingEndpoint:
    """A respx side effect for an endpoint that never answers: only the caller's own timeout ends a
    request to it, and `abandoned` counts the requests ended that way (cancelled while waiting)."""

    def __init__(self) -> None:
        self.calls = 0
        self.abandoned = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        try:
            await asyncio.Event().wait()  # nothing sets it
        except asyncio.CancelledError:
            self.abandoned += 1
            raise
        raise AssertionError("unreachable")


def _apply(target: dict[str, Any], changes: Mapping[str, Any]) -> None:
    for name, value in changes.items():
        if value is REMOVE:
            target.pop(name, None)
        else:
            target[name] = value


def merge_overrides(*providers: MockProvider, **extra: Any) -> dict[str, Any]:
    """Settings keyword arguments configuring all `providers` at once (plus `extra`)."""
    merged: dict[str, Any] = {"auth_providers": []}
    for provider in providers:
        overrides = provider.settings_overrides()
        merged["auth_providers"] = [*merged["auth_providers"], *overrides.pop("auth_providers")]
        merged.update(overrides)
    merged.update(extra)
    return merged


def make_settings(*providers: MockProvider, **extra: Any) -> Settings:
    """Test Settings for these providers; no `.env` is read."""
    values: dict[str, Any] = {"environment": "test", **merge_overrides(*providers, **extra)}
    return Settings(_env_file=None, **values)


def mock_all(router: respx.MockRouter, providers: Iterable[MockProvider]) -> list[respx.Route]:
    return [provider.mock(router) for provider in providers]
