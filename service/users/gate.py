"""`CurrentUser`: the one gate every protected route goes through.

token (Bearer, else Clerk's `__session` cookie) → verified `Claims` (service.auth) → the local user
(the identity service) → `Principal`. Every refusal is one generic 401 (the cause goes to a debug
log), so a client learns nothing about why a token failed.

"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from service.auth.keys import KeysUnavailable
from service.auth.profile import OrgContext
from service.auth.tokens import Claims, InvalidToken, TokenVerifier
from service.core.errors import Forbidden, ServiceUnavailable, Unauthorized
from service.core.headers import header
from service.core.memo import Derived
from service.deps import app_state
from service.users.identity import Refused
from service.users.store import UserRef

if TYPE_CHECKING:
    from service.state import AppState

log = logging.getLogger("routebook.auth")

SESSION_COOKIE = "__session"
COOKIE_PROVIDER = "clerk"  # the __session cookie is Clerk's
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
GENERIC_DETAIL = "The access token is missing, invalid or expired."


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller, as every route and repository sees it."""

    user_id: uuid.UUID
    provider: str
    subject: str
    session_id: str | None
    # Global roles and permissions: only from claims an end user cannot set.
    roles: frozenset[str]
    permissions: frozenset[str]
    # The organisation the token acts in; its role never satisfies a global check.
    org: OrgContext | None
    email: str | None
    created_at: datetime
    # The token's `iat` (epoch seconds), when it has one: orders it against membership changes.
    issued_at: float | None = None


def _unauthorized(token_sent: bool) -> Unauthorized:
    challenge = 'Bearer error="invalid_token"' if token_sent else "Bearer"
    return Unauthorized(GENERIC_DETAIL, headers={"WWW-Authenticate": challenge})


def _token_from(request: Request, verifier: TokenVerifier) -> tuple[str | None, bool]:
    """(token, came_from_cookie). A malformed Authorization header counts as a sent, bad token; the
    cookie is read only when Clerk, whose cookie it is, is configured."""
    authorization = header(request.scope, b"authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return "", False
        return credentials.strip(), False
    if COOKIE_PROVIDER in verifier.provider_names:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            return cookie, True
    return None, False


# Where the request's caller is kept once known: `current_user` may be reached both as a route's
# dependency and from another gate (`CurrentMember`), and verifies the token once per request.
_PRINCIPAL = "routebook.principal"


async def current_user(request: Request) -> Principal:
    return await caller(request, app_state(request))


async def caller(request: Request, state: AppState) -> Principal:
    """The request's caller, verified once per request: `current_user`, for a gate that holds the
    app's state already."""
    known: Principal | None = request.scope.get(_PRINCIPAL)
    if known is not None:
        return known
    verifier, identity = state.verifier, state.identity
    token, from_cookie = _token_from(request, verifier)
    if token is None:
        raise _unauthorized(token_sent=False)
    if from_cookie and request.method in UNSAFE_METHODS:
        # A cookie rides along on cross-site requests; the Origin proves the page is ours (CSRF).
        origin = request.headers.get("origin")
        if origin is None or origin not in (state.settings.cors_origins or ()):
            raise Forbidden("A cookie-authenticated request must come from an allowed origin.")
    if not token:
        raise _unauthorized(token_sent=True)
    try:
        claims = await verifier.verify(token)
    except InvalidToken:
        raise _unauthorized(token_sent=True) from None
    except KeysUnavailable:
        raise ServiceUnavailable(
            "The identity provider's signing keys are unavailable; try again shortly.",
            headers={"Retry-After": "5"},
            cause="identity_keys_unavailable",
        ) from None
    if from_cookie and claims.provider != COOKIE_PROVIDER:
        log.debug("token refused: a non-Clerk token in the Clerk session cookie")
        raise _unauthorized(token_sent=True)
    try:
        # Revocation and tombstone, asked on every request (answered from the identity caches).
        user = await identity.user_for(claims)
    except Refused as exc:
        log.debug("token refused: %s", exc.cause)
        raise _unauthorized(token_sent=True) from None
    sources = (claims, user)
    principal = _principals.get(sources)
    if principal is None:
        principal = _principal(claims, user)
        _principals.put(sources, principal)
    request.scope[_PRINCIPAL] = principal
    return principal


def _principal(claims: Claims, user: UserRef) -> Principal:
    return Principal(
        user_id=user.id,
        provider=claims.provider,
        subject=claims.subject,
        session_id=claims.session_id,
        roles=frozenset(claims.roles),
        permissions=frozenset(claims.permissions),
        org=claims.org,
        # The synced address (webhooks) wins; a first-seen user may only have the token's.
        email=user.email or claims.email,
        created_at=user.created_at,
        issued_at=claims.issued_at,
    )


# The caller by (claims, user). The verifier hands out one Claims object per token and the identity
# service one UserRef per user for as long as each stays cached, so an SPA's requests find the same
# pair and skip building a Principal; once either is verified or read again, a new one is built.
_principals: Derived[Principal] = Derived(10_000)


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
    """A dependency: the caller, if they hold the *global* `role`; 403 for a valid token without it."""
    return _require("role", role, lambda principal: principal.roles)


def require_permission(permission: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, if they hold the *global* `permission`; 403 otherwise."""
    return _require("permission", permission, lambda principal: principal.permissions)


def require_org_permission(permission: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, if their active organisation grants `permission`; 403 otherwise.

    Only for actions on that organisation's own resources: anyone can create an organisation and
    hold every permission in it.
    """
    return _require(
        "organisation permission",
        permission,
        lambda principal: frozenset(principal.org.permissions) if principal.org else frozenset(),
    )
