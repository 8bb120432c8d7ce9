"""/api/v1/webhook-endpoints: the active workspace's outbound webhook endpoints, their deliveries
and replays.

Each request runs in one transaction as the caller in the request's workspace under row-level
security, like the planning routes; another workspace's endpoint or delivery, or a workspace the
caller is not a member of, answers exactly as a missing one (404). Every member reads (a viewer
too: endpoints without their secrets, deliveries); registering, deleting, rotating a secret and
replaying are changes, for members and admins (a viewer: 403) — the same line as planning data,
since a member may already read every solution the webhooks report. A URL is checked (addresses.py)
before anything is written: 422 with the pointer `/url` when it may not be delivered to (why
exactly is logged, not told: whether a name resolves, and to what, is the network's business).
A workspace has at most OUTBOUND_WEBHOOK_MAX_ENDPOINTS endpoints: one more is 409.
"""

from __future__ import annotations

import base64
import logging
import secrets
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from service.core.bodies import pointed_json_model
from service.core.errors import Forbidden, ValidationFailed
from service.core.openapi import (
    READ_PROBLEMS,
    ROLE_PROBLEM,
    WRITE_PROBLEMS,
    json_body,
    located,
    problem_responses,
)
from service.core.pagination import Paged, PageRequest, page_request, paginate
from service.core.repository import READ_ONLY_DETAIL, WorkspaceScope
from service.deps import AppSettings, Db, WebhookTargets
from service.outbound.addresses import AddressRefused
from service.outbound.repository import DeliveryRecord, EndpointRecord, OutboundRepository
from service.outbound.schemas import (
    WebhookDeliveryPage,
    WebhookDeliveryRead,
    WebhookEndpointCreate,
    WebhookEndpointPage,
    WebhookEndpointWithSecret,
)
from service.users.gate import current_user
from service.workspaces.gate import CurrentMember

PREFIX = "/api/v1"

log = logging.getLogger("routebook.outbound")


async def caller_outbound(db: Db, member: CurrentMember) -> WorkspaceScope[OutboundRepository]:
    return WorkspaceScope(db, member.workspace.id, member.user_id, member.role.writes, OutboundRepository)


Outbound = Annotated[WorkspaceScope[OutboundRepository], Depends(caller_outbound)]
Paging = Annotated[PageRequest, Depends(page_request)]
# Each validation error with a JSON pointer into the body (`/url`, `/events/0`).
EndpointBody = Annotated[WebhookEndpointCreate, Depends(pointed_json_model(WebhookEndpointCreate))]


def new_secret() -> str:
    """`whsec_` and 32 random bytes in base64, as Standard Webhooks libraries read it."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


router = APIRouter(prefix=PREFIX, tags=["webhook endpoints"], dependencies=[Depends(current_user)])


@router.post(
    "/webhook-endpoints",
    status_code=201,
    response_model=WebhookEndpointWithSecret,
    responses={
        **ROLE_PROBLEM,
        **WRITE_PROBLEMS,
        **located("Registered; the secret is shown only now"),
        **problem_responses(409),
    },
    summary="Register an endpoint for outbound webhooks (its signing secret is shown once)",
    openapi_extra=json_body(WebhookEndpointCreate),
)
async def create_endpoint(
    body: EndpointBody,
    outbound: Outbound,
    targets: WebhookTargets,
    settings: AppSettings,
    response: Response,
) -> EndpointRecord:
    if not outbound.may_write:
        raise Forbidden(READ_ONLY_DETAIL)  # before the URL is looked up
    try:
        await targets.check(body.url)
    except AddressRefused as exc:
        # The detail for the operator; the URL's query (which may carry a receiver's token) is not.
        log.info("webhook endpoint refused in workspace %s: %s", outbound.workspace, exc.detail)
        raise ValidationFailed(
            [{"loc": ["body", "url"], "pointer": "/url", "msg": str(exc), "type": "url_refused"}]
        ) from None
    async with outbound.writing() as repo:
        record = await repo.create_endpoint(
            body.url,
            [str(event) for event in body.events],
            new_secret(),
            limit=settings.outbound_webhook_max_endpoints,
        )
    response.headers["Location"] = f"{PREFIX}/webhook-endpoints/{record.id}"
    return record


@router.get(
    "/webhook-endpoints",
    response_model=WebhookEndpointPage,
    responses=READ_PROBLEMS,
    summary="The workspace's webhook endpoints, newest first (without their secrets)",
)
async def list_endpoints(outbound: Outbound, page: Paging) -> Paged[EndpointRecord]:
    async with outbound.transaction() as repo:
        return await paginate(f"webhook-endpoints:{repo.workspace}", page, repo.list_endpoints)


@router.delete(
    "/webhook-endpoints/{endpoint_id}",
    status_code=204,
    response_class=Response,
    responses={**ROLE_PROBLEM, **READ_PROBLEMS},
    summary="Delete an endpoint with its deliveries (nothing more is sent to it)",
)
async def delete_endpoint(endpoint_id: uuid.UUID, outbound: Outbound) -> Response:
    async with outbound.writing() as repo:
        await repo.delete_endpoint(endpoint_id)
    return Response(status_code=204)


@router.post(
    "/webhook-endpoints/{endpoint_id}/rotate-secret",
    response_model=WebhookEndpointWithSecret,
    responses={**ROLE_PROBLEM, **READ_PROBLEMS, 200: {"description": "The new secret, shown only now"}},
    summary="Replace the signing secret: every attempt from now on is signed with the new one",
)
async def rotate_secret(endpoint_id: uuid.UUID, outbound: Outbound) -> EndpointRecord:
    async with outbound.writing() as repo:
        return await repo.rotate_secret(endpoint_id, new_secret())


@router.get(
    "/webhook-endpoints/{endpoint_id}/deliveries",
    response_model=WebhookDeliveryPage,
    responses=READ_PROBLEMS,
    summary="An endpoint's deliveries, newest first, each with every attempt",
)
async def list_deliveries(endpoint_id: uuid.UUID, outbound: Outbound, page: Paging) -> Paged[DeliveryRecord]:
    async with outbound.transaction() as repo:
        return await paginate(
            f"webhook-deliveries:{endpoint_id}",
            page,
            lambda limit, cursor: repo.list_deliveries(endpoint_id, limit, cursor),
        )


@router.post(
    "/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/replay",
    status_code=202,
    response_model=WebhookDeliveryRead,
    responses={
        202: {"description": "Queued to be sent again now, with the same `webhook-id`"},
        **ROLE_PROBLEM,
        **READ_PROBLEMS,
        **problem_responses(409),
    },
    summary="Send a delivery again (same webhook-id, signed with the current secret)",
)
async def replay_delivery(
    endpoint_id: uuid.UUID, delivery_id: uuid.UUID, outbound: Outbound
) -> DeliveryRecord:
    async with outbound.writing() as repo:
        return await repo.replay(endpoint_id, delivery_id)
