"""POST /api/v1/webhooks/{provider}: verify the raw bytes, parse, apply once (users and sessions through
the identity service, organisations and memberships through the workspace sync).

Statuses: handled, duplicate or ignored → 204; bad, missing or stale signature →
401; malformed payload under a valid signature → 400; body over WEBHOOK_MAX_BODY_BYTES → 413 (the
body limit middleware, before the body is buffered); the receiver's secret not configured, or a
failure on our side → 503, so the provider keeps retrying and nothing is lost once we are fixed.
Nothing a sender can send is a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Path, Request, Response

from service import providers
from service.core import metrics
from service.core.db import Database
from service.core.errors import AppError, BadRequest, NotFound, ServiceUnavailable, Unauthorized
from service.core.notify import Listener
from service.core.openapi import NO_VALIDATION_ERRORS, problem_responses
from service.deps import AppSettings, Db, Identity, Notifications, WebhookJanitor, Workspaces
from service.providers.base import Provider
from service.providers.events import MalformedPayload, ProviderEvent
from service.providers.webhook_auth import SignatureInvalid
from service.users.identity import IdentityService
from service.webhooks.ledger import Delivery, OrganizationSync, apply_delivery
from service.workspaces.sync import WorkspaceSync

log = logging.getLogger("routebook.webhooks")

_BAD_SIGNATURE = "The webhook signature is missing, invalid or stale."
_CATCH_UP_TIMEOUT_SECONDS = 1.0
RESPONSES: dict[int | str, dict[str, Any]] = {
    204: {"description": "Applied, a duplicate of an applied delivery, or an event type we ignore"},
    **problem_responses(400, 401, 404, 413, 503),
}
RESPONSES[400]["description"] = "Valid signature, but the payload is not a usable event"
RESPONSES[401]["description"] = "Signature missing, invalid or outside the timestamp tolerance"
RESPONSES[404]["description"] = "No webhook receiver for this provider"
RESPONSES[503]["description"] = "Receiver not configured, or the database is unavailable: retry"

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


def _receiver(name: str) -> Provider[Any]:
    try:
        provider = providers.get(name)
    except ValueError:
        raise NotFound("No webhook receiver exists for this provider.") from None
    if not provider.has_webhooks:
        raise NotFound("No webhook receiver exists for this provider.")
    return provider


@router.post(
    "/{provider}",
    status_code=204,
    response_class=Response,
    responses=RESPONSES,
    summary="User, session, organisation and membership events from an identity provider",
    openapi_extra=NO_VALIDATION_ERRORS,
)
async def receive(
    request: Request,
    settings: AppSettings,
    db: Db,
    identity: Identity,
    workspaces: Workspaces,
    listener: Notifications,
    janitor: WebhookJanitor,
    provider: str = Path(description="clerk, workos or supabase (or another registered provider)"),
) -> Response:
    receiver = _receiver(provider)
    # The exact bytes the provider signed; never a re-serialization of parsed JSON.
    body = await request.body()
    secret = receiver.webhook_secret(settings)
    if secret is None:
        # Fail closed, but as our fault (503), not the sender's: providers keep retrying, and
        # the deliveries go through once the secret is set.
        log.warning("webhook %s refused: its signing secret is not configured", provider)
        metrics.webhook_delivery(receiver.name, "not_configured")
        raise ServiceUnavailable(
            "This webhook receiver is not configured.",
            headers={"Retry-After": "60"},
            cause="webhook_not_configured",
        )
    try:
        event = receiver.read_webhook(request.headers, body, secret)
    except SignatureInvalid as exc:
        # The cause never contains the secret or the signature.
        log.debug("webhook %s refused: %s", provider, exc.cause)
        metrics.webhook_delivery(receiver.name, "bad_signature")
        raise Unauthorized(_BAD_SIGNATURE) from None
    except MalformedPayload as exc:
        metrics.webhook_delivery(receiver.name, "malformed")
        raise BadRequest(f"The webhook payload is not a usable event: {exc}") from None

    try:
        outcome = await _apply(db, identity, WorkspaceSync(workspaces, settings.org_role_map), event)
    except AppError:
        metrics.webhook_delivery(receiver.name, "unavailable")
        raise
    metrics.webhook_delivery(receiver.name, outcome.value)
    log.info("webhook %s %s: %s", provider, event.event_type, outcome.value)
    if outcome is Delivery.APPLIED:
        await _caught_up(listener)
        await janitor.maybe_purge(db, identity)
    return Response(status_code=204)


async def _caught_up(listener: Listener) -> None:
    """Answer only once this instance has applied its own announcement (NOTIFY reaches the sender's
    listener asynchronously too), so the very next request here already refuses a deleted user or a
    revoked session. Other instances catch up as their listeners receive it."""
    try:
        await listener.sync(timeout=_CATCH_UP_TIMEOUT_SECONDS)
    except Exception as exc:
        # The change is committed; a listener this slow is about to be declared lost (and the
        # service to go blind, reading the database), so the delivery still succeeds.
        log.warning(
            "webhook applied, but the local identity listener did not confirm (%s)", type(exc).__name__
        )


async def _apply(
    db: Database, identity: IdentityService, organizations: OrganizationSync, event: ProviderEvent
) -> Delivery:
    try:
        return await apply_delivery(db, identity, organizations, event)
    except AppError:
        raise  # already a problem (the database is unavailable: 503 with Retry-After)
    except Exception:
        # A bug of ours, not the sender's: still a retryable 5xx rather than a 500, logged in full.
        # The transaction rolled back: nothing is half-applied, and the provider's retry is safe.
        log.exception("webhook %s %s not applied", event.provider, event.event_type)
        raise ServiceUnavailable(
            "The delivery could not be stored; retry later.", cause="webhook_not_applied"
        ) from None
