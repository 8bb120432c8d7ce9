"""`CurrentUser`: the one gate every protected route goes through.

token (Bearer, else Clerk's `__session` cookie) → verified claims → local user → Principal.
Every refusal is one generic 401 (the cause goes to a debug log), so a client learns nothing
about why a token failed.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from service.auth.jwks import KeysUnavailable
from service.auth.tokens import Claims, InvalidToken, TokenVerifier
from service.errors import Forbidden, ServiceUnavailable, Unauthorized
from service.users.directory import MAX_SESSION_TOKEN_LIFETIME, IdentityDirectory

log = logging.getLogger("routebook.auth")

SESSION_COOKIE = "__session"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
GENERIC_DETAIL = "The access token is missing, invalid or expired."
MAX_SESSION_TOKEN_LIFETIME_SECONDS = MAX_SESSION_TOKEN_LIFETIME.total_seconds()


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller, as every route and repository sees it."""

    user_id: uuid.UUID
    provider: str
    subject: str
    session_id: str | None
    org_id: str | None
    roles: frozenset[str]
    permissions: frozenset[str]
    email: str | None
    created_at: datetime


def _unauthorized(token_sent: bool) -> Unauthorized:
    challenge = 'Bearer error="invalid_token"' if token_sent else "Bearer"
    return Unauthorized(GENERIC_DETAIL, headers={"WWW-Authenticate": challenge})


def _token_from(request: Request, cookie_allowed: bool) -> tuple[str | None, bool]:
    """(token, came_from_cookie). A malformed Authorization header counts as a sent, bad token."""
    authorization = request.headers.get("authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return "", False
        return credentials.strip(), False
    if cookie_allowed:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            return cookie, True
    return None, False


async def current_user(request: Request) -> Principal:
    state = request.app.state
    verifier: TokenVerifier = state.verifier
    directory: IdentityDirectory = state.identity
    token, from_cookie = _token_from(request, cookie_allowed="clerk" in verifier.provider_names)
    if token is None:
        raise _unauthorized(token_sent=False)
    if from_cookie and request.method in UNSAFE_METHODS:
        # A cookie rides along on cross-site requests; the Origin proves the page is ours (CSRF).
        origin = request.headers.get("origin")
        if origin is None or origin not in state.settings.cors_origins:
            raise Forbidden("A cookie-authenticated request must come from an allowed origin.")
    if not token:
        raise _unauthorized(token_sent=True)
    try:
        claims = await verifier.verify(token)
    except InvalidToken:
        raise _unauthorized(token_sent=True) from None
    except KeysUnavailable:
        raise ServiceUnavailable(
            "The identity provider's signing keys are unavailable; try again shortly."
        ) from None
    if from_cookie and claims.provider != "clerk":
        # The __session cookie is Clerk's; another provider's token has no business arriving there.
        log.debug("token refused: a non-Clerk token in the Clerk session cookie")
        raise _unauthorized(token_sent=True)
    return await _principal(claims, directory)


def _outlives_revocations(claims: Claims) -> bool:
    """A session token living longer than a revocation is kept could outlive its own revocation."""
    issued = claims.issued_at if claims.issued_at is not None else time.time()
    return claims.expires_at - issued > MAX_SESSION_TOKEN_LIFETIME_SECONDS


async def _principal(claims: Claims, directory: IdentityDirectory) -> Principal:
    if claims.session_id is not None:
        if _outlives_revocations(claims):
            log.debug("token refused: a session token living longer than revocations are kept")
            raise _unauthorized(token_sent=True)
        if await directory.is_revoked(claims.provider, claims.session_id):
            log.debug("token refused: provider session revoked")
            raise _unauthorized(token_sent=True)
    user = await directory.resolve(claims.provider, claims.subject, claims.email)
    if user.deleted:
        log.debug("token refused: user deleted")
        raise _unauthorized(token_sent=True)
    return Principal(
        user_id=user.id,
        provider=claims.provider,
        subject=claims.subject,
        session_id=claims.session_id,
        org_id=claims.org_id,
        roles=frozenset(claims.roles),
        permissions=frozenset(claims.permissions),
        # The synced address (webhooks) wins; a first-seen user may only have the token's.
        email=user.email or claims.email,
        created_at=user.created_at,
    )


CurrentUser = Annotated[Principal, Depends(current_user)]


def _require(
    kind: str, name: str, held: Callable[[Principal], frozenset[str]]
) -> Callable[..., Awaitable[Principal]]:
    async def check(principal: CurrentUser) -> Principal:
        if name not in held(principal):
            raise Forbidden(f"This action requires the {name!r} {kind}.")
        return principal

    return check


def require_role(role: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, if they hold `role`; 403 for a valid token without it."""
    return _require("role", role, lambda principal: principal.roles)


def require_permission(permission: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, if they hold `permission`; 403 for a valid token without it."""
    return _require("permission", permission, lambda principal: principal.permissions)
