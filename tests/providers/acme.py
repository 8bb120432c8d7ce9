"""A fourth identity provider, written as one module and registered: what adding Auth0, Keycloak or
Cognito takes. Test-only: a fixed key, `groups` as global roles, an HMAC-signed webhook."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

import jwt
import orjson

from service.auth.keys import StaticKeys
from service.auth.profile import ProviderProfile
from service.providers import fields
from service.providers.base import KeyContext, Provider
from service.providers.events import ProviderUser, UserEvent, bare_event, upsert_event
from service.providers.webhook_auth import SignatureInvalid
from tests.kit import SigningKey

ISSUER = "https://login.acme.test/"
SECRET = "acme-webhook-secret"


class Acme(Provider[Any]):
    name = "acme"
    has_webhooks = True

    def __init__(self) -> None:
        self.key = SigningKey.generate("RS256")

    def profile(self, settings: Any, keys: KeyContext) -> ProviderProfile:
        return ProviderProfile(
            name=self.name,
            issuers=(ISSUER,),
            algorithms=frozenset({"RS256"}),
            keys=StaticKeys([self.key.public_jwk()]),
            audience="routebook",
            role_paths=("groups",),
        )

    def webhook_secret(self, settings: Any) -> str | None:
        return SECRET

    def read_webhook(self, headers: Mapping[str, str], body: bytes, secret: str) -> UserEvent:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, headers.get("x-acme-signature", "")):
            raise SignatureInvalid("no matching signature")
        event = fields.load_object(body)
        subject = fields.id_at(event, "user")
        if event.get("type") == "deleted":
            return bare_event("delete", self.name, fields.id_at(event, "id"), "deleted", subject=subject)
        user = ProviderUser(
            subject, fields.email_at(event, "email"), None, fields.timestamp(event.get("at"), "at")
        )
        return upsert_event(self.name, fields.id_at(event, "id"), "updated", user)

    # -- what a test sends --------------------------------------------------------------------

    def token(self, subject: str, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": "routebook", "sub": subject, "iat": now, "exp": now + 300, **claims}
        return jwt.encode(payload, self.key.private, algorithm="RS256", headers={"kid": self.key.kid})

    @staticmethod
    def delivery(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        body = orjson.dumps(event)
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        return body, {"x-acme-signature": signature, "content-type": "application/json"}
