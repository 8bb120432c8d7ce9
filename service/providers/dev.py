"""The built-in development issuer: a local RSA key that mints tokens for `make run` and tests.

Its tokens go through the same verification as any provider's; only the key is local. Never in
production (Settings refuses `dev` there). Its routes (`/dev/token`, its JWKS) are in `service.dev`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from pydantic_settings import BaseSettings

from service.auth.keys import StaticKeys
from service.auth.profile import ProviderProfile
from service.providers.base import CommaList, KeyContext, Provider

NAME = "dev"
DEFAULT_ROLES_CLAIMS = ("roles",)

logger = logging.getLogger("routebook.auth.dev")


ALGORITHM = "RS256"
KEY_BITS = 2048


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an RSA JWK: a stable kid that changes only with the key."""
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class DevSettings(BaseSettings):
    dev_issuer: str = "urn:routebook:dev"
    dev_roles_claims: CommaList | None = None
    # Where the dev issuer's key (and the embedded development database) live.
    data_dir: Path = Path(".data")

    @property
    def dev_key_path(self) -> Path:
        return self.data_dir / "dev-issuer.pem"


class DevIssuer:
    """Mints RS256 tokens with a key kept in one file (mode 0600)."""

    def __init__(self, private_key: rsa.RSAPrivateKey, issuer: str) -> None:
        self.issuer = issuer
        self._private_key = private_key
        public: dict[str, Any] = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        self.kid = jwk_thumbprint(public)
        self._public_jwk = {**public, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}
        self._keys = StaticKeys([self._public_jwk])

    @classmethod
    def load_or_create(cls, path: Path, issuer: str) -> DevIssuer:
        """Load the key at `path`, generating it there first if there is none."""
        if not path.exists():
            _create_key_file(path)
        return cls(_load_key(path), issuer)

    @property
    def keys(self) -> StaticKeys:
        return self._keys

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self._public_jwk)]}

    def mint(
        self,
        *,
        subject: str,
        email: str | None,
        roles: Sequence[str] = (),
        ttl_seconds: int = 3600,
        session_id: str | None = None,
    ) -> str:
        if not subject:
            raise ValueError("subject must not be empty")
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_seconds,
            "jti": secrets.token_urlsafe(12),
            "roles": list(roles),
        }
        if email is not None:
            claims["email"] = email
        if session_id is not None:
            claims["sid"] = session_id
        return jwt.encode(claims, self._private_key, algorithm=ALGORITHM, headers={"kid": self.kid})


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # mkstemp creates the file 0600 from the start: the key is never readable by others,
    # not even for an instant before a chmod.
    fd, tmp_name = tempfile.mkstemp(prefix=".dev-issuer-", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        # link, unlike rename, fails if another process created the key meanwhile:
        # then both processes use that one key instead of the last writer's.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("generated the development issuer key at %s", path)


# Keys already loaded, by the file's identity: loading checks the RSA key, which is most of an app's
# start-up, and an app reads the same file twice (the issuer's routes and its token profile).
_LOADED: dict[tuple[Path, int, int, int], rsa.RSAPrivateKey] = {}


def _load_key(path: Path) -> rsa.RSAPrivateKey:
    stat = path.stat()
    if stat.st_mode & 0o077:
        # A key others can read would let them mint tokens; tighten rather than refuse.
        path.chmod(0o600)
        logger.warning("tightened permissions of %s to 0600", path)
    identity = (path.resolve(), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    key = _LOADED.get(identity)
    if key is None:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey) or loaded.key_size < KEY_BITS:
            raise ValueError(f"{path} does not hold an RSA key of at least {KEY_BITS} bits")
        key = _LOADED[identity] = loaded
    return key


def dev_profile(issuer: DevIssuer, roles_claims: Sequence[str] | None = None) -> ProviderProfile:
    return ProviderProfile(
        name=NAME,
        issuers=(issuer.issuer,),
        algorithms=frozenset({"RS256"}),
        keys=issuer.keys,
        role_paths=tuple(roles_claims or DEFAULT_ROLES_CLAIMS),
        permission_paths=("permissions",),
        org_id_paths=("org_id",),
        org_role_paths=("org_role",),
        org_permission_paths=("org_permissions",),
        session_paths=("sid",),
    )


class Dev(Provider[DevSettings]):
    name = NAME

    def profile(self, settings: DevSettings, keys: KeyContext) -> ProviderProfile:
        issuer = DevIssuer.load_or_create(settings.dev_key_path, settings.dev_issuer)
        return dev_profile(issuer, settings.dev_roles_claims)


PROVIDER = Dev()
