"""POST /api/v1/webhooks/{clerk,workos,supabase}: verify the raw bytes, parse, apply once.

Statuses (contract §5): handled, duplicate or ignored → 204; bad, missing or stale signature →
401; malformed payload under a valid signature → 400; body over MAX_BODY_BYTES → 413 (the body
limit middleware); the receiver's secret not configured, or a failure on our side → 503, so the
provider keeps retrying and nothing is lost once we are fixed. Nothing a sender can send is a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import sqlalchemy.exc
from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import SecretStr

from service.config import Settings
from service.db import Database, DatabaseDep
from service.errors import BadRequest, ServiceUnavailable, Unauthorized
from service.problems import DATABASE_DOWN
from service.users.listener import IdentityListener
from service.webhooks.handlers import Delivery, LedgerJanitor, apply_delivery
from service.webhooks.payloads import MalformedPayload, UserEvent, parse_clerk, parse_supabase, parse_workos
from service.webhooks.signatures import (
    SignatureInvalid,
    split_secrets,
    verify_clerk,
    verify_supabase,
    verify_workos,
)

log = logging.getLogger("routebook.webhooks")

# Verify, then parse: (headers, raw body, configured secret) → event. Raises SignatureInvalid
# before a byte of the body is interpreted, MalformedPayload after.
Reader = Callable[[Mapping[str, str], bytes, str], UserEvent]

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    204: {"description": "Applied, a duplicate of an applied delivery, or an event type we ignore"},
    400: {"description": "Valid signature, but the payload is not a usable event", **_PROBLEM},
    401: {"description": "Signature missing, invalid or outside the timestamp tolerance", **_PROBLEM},
    413: {"description": "Body larger than MAX_BODY_BYTES", **_PROBLEM},
    503: {"description": "Receiver not configured, or the database is unavailable: retry", **_PROBLEM},
}
_BAD_SIGNATURE = "The webhook signature is missing, invalid or stale."
_CATCH_UP_TIMEOUT_SECONDS = 1.0
_OUR_FAILURE: tuple[type[Exception], ...] = (*DATABASE_DOWN, sqlalchemy.exc.SQLAlchemyError)


def _read_clerk(headers: Mapping[str, str], body: bytes, secret: str) -> UserEvent:
    # Several space-separated secrets: old and new side by side while rotating.
    message_id = verify_clerk(headers, body, split_secrets(secret))
    return parse_clerk(body, message_id)


def _read_workos(headers: Mapping[str, str], body: bytes, secret: str) -> UserEvent:
    verify_workos(headers.get("workos-signature"), body, secret)
    return parse_workos(body)


def _read_supabase(headers: Mapping[str, str], body: bytes, secret: str) -> UserEvent:
    # The webhook-id (whsec mode) is new on every retry, so it is no de-duplication key.
    verify_supabase(headers, body, secret)
    return parse_supabase(body)


def _configured(secret: SecretStr | None) -> str | None:
    value = secret.get_secret_value().strip() if secret is not None else ""
    return value or None


def webhooks_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
    janitor = LedgerJanitor()

    async def receive(
        request: Request, db: DatabaseDep, provider: str, secret: SecretStr | None, read: Reader
    ) -> Response:
        settings: Settings = request.app.state.settings
        # The exact bytes the provider signed; never a re-serialization of parsed JSON.
        body = await request.body()
        configured = _configured(secret)
        if configured is None:
            # Fail closed, but as our fault (503), not the sender's: providers keep retrying, and
            # the deliveries go through once the secret is set.
            log.warning("webhook %s refused: its signing secret is not configured", provider)
            raise ServiceUnavailable("This webhook receiver is not configured.")
        try:
            event = read(request.headers, body, configured)
        except SignatureInvalid as exc:
            # The cause never contains the secret or the signature.
            log.debug("webhook %s refused: %s", provider, exc.cause)
            raise Unauthorized(_BAD_SIGNATURE) from None
        except MalformedPayload as exc:
            raise BadRequest(f"The webhook payload is not a usable event: {exc}") from None

        outcome = await _apply(db, event, timedelta(seconds=settings.jwt_leeway_seconds))
        log.info("webhook %s %s: %s", provider, event.event_type, outcome.value)
        if outcome is Delivery.APPLIED:
            await _caught_up(request.app)
            await janitor.maybe_purge(db)
        return Response(status_code=204)

    @router.post(
        "/clerk", status_code=204, responses=RESPONSES, summary="Clerk (Svix) user and session events"
    )
    async def clerk(request: Request, db: DatabaseDep) -> Response:
        return await receive(
            request, db, "clerk", request.app.state.settings.clerk_webhook_secret, _read_clerk
        )

    @router.post("/workos", status_code=204, responses=RESPONSES, summary="WorkOS user events")
    async def workos(request: Request, db: DatabaseDep) -> Response:
        return await receive(
            request, db, "workos", request.app.state.settings.workos_webhook_secret, _read_workos
        )

    @router.post("/supabase", status_code=204, responses=RESPONSES, summary="Supabase auth.users changes")
    async def supabase(request: Request, db: DatabaseDep) -> Response:
        return await receive(
            request, db, "supabase", request.app.state.settings.supabase_webhook_secret, _read_supabase
        )

    return router


async def _caught_up(app: FastAPI) -> None:
    """Answer only once this instance has applied its own announcement (NOTIFY reaches the sender's
    listener asynchronously too), so the very next request here already refuses a deleted user or a
    revoked session. Other instances catch up as their listeners receive it."""
    listener: IdentityListener | None = getattr(app.state, "identity_listener", None)
    if listener is None:
        return
    try:
        await listener.sync(timeout=_CATCH_UP_TIMEOUT_SECONDS)
    except Exception as exc:
        # The change is committed; a listener this slow is about to be declared lost (and the
        # directory to go blind, reading the database), so the delivery still succeeds.
        log.warning(
            "webhook applied, but the local identity listener did not confirm (%s)", type(exc).__name__
        )


async def _apply(db: Database, event: UserEvent, leeway: timedelta) -> Delivery:
    try:
        return await apply_delivery(db, event, leeway=leeway)
    except _OUR_FAILURE as exc:
        # The transaction rolled back: nothing is half-applied, and the provider's retry is safe.
        log.warning(
            "webhook %s %s not applied: database error (%s)",
            event.provider,
            event.event_type,
            type(exc).__name__,
        )
        raise ServiceUnavailable("The delivery could not be stored; retry later.") from None
    except Exception:
        # A bug of ours, not the sender's: still a retryable 5xx rather than a 500, logged in full.
        log.exception("webhook %s %s not applied", event.provider, event.event_type)
        raise ServiceUnavailable("The delivery could not be stored; retry later.") from None
