"""Hand-built tokens PyJWT refuses to produce: alg none, HMAC with a public key, bad signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def split(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(header, payload, signature segment) of a compact token, unverified."""
    header, payload, signature = token.split(".")
    return _unb64_json(header), _unb64_json(payload), signature


def _unb64_json(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    result: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return result


def assemble(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A compact token from parts, with whatever signature bytes you give (none by default)."""
    return f"{b64url_json(header)}.{b64url_json(payload)}.{b64url(signature)}"


def hmac_signed(header: dict[str, Any], payload: dict[str, Any], key: bytes, alg: str = "HS256") -> str:
    """HS* over the parts with any key bytes — e.g. a provider's public PEM or JWK JSON."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = f"{b64url_json({**header, 'alg': alg})}.{b64url_json(payload)}"
    signature = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def replace_signature(token: str, signature: bytes) -> str:
    head, body, _ = token.split(".")
    return f"{head}.{body}.{b64url(signature)}"


def reheader(token: str, **changes: Any) -> str:
    """The token with header members changed (None deletes one), signature kept as is."""
    head, body, signature = token.split(".")
    header = _unb64_json(head)
    for name, value in changes.items():
        if value is None:
            header.pop(name, None)
        else:
            header[name] = value
    return f"{b64url_json(header)}.{body}.{signature}"


def sign_raw(payload: Any, private_key: Any, alg: str, headers: dict[str, Any] | None = None) -> str:
    """Sign any JSON header and payload as-is (PyJWT's encoders refuse a list `iss`, an int `kid`)."""
    signing_input = f"{b64url_json({**(headers or {}), 'alg': alg})}.{b64url_json(payload)}"
    algorithm = jwt.algorithms.get_default_algorithms()[alg]
    signature = algorithm.sign(signing_input.encode(), algorithm.prepare_key(private_key))
    return f"{signing_input}.{b64url(signature)}"
