"""What the webhook endpoint API accepts and returns."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import Field, field_validator

from service.core.pagination import Page
from service.core.schemas import Body, Read
from service.core.timestamps import Timestamp
from service.outbound.addresses import MAX_URL_LENGTH
from service.outbound.events import DeliveryStatus, EventType

Url = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        # The scheme in any case (`HTTPS://` is the same URL); control characters are refused
        # with the rest of the checks (addresses.py), with a message that says so.
        pattern=r"^[hH][tT][tT][pP][sS]?://[^\s/?#@]+([/?][^\s#]*)?$",
        description=(
            "Where deliveries are POSTed: an `https://` URL whose host resolves only to public "
            "addresses (checked now and before every attempt). `http://` and private addresses only "
            "where the server allows them (OUTBOUND_WEBHOOK_ALLOW_PRIVATE, never in production)."
        ),
        examples=["https://example.com/hooks/routebook"],
    ),
]
Events = Annotated[
    list[EventType],
    Field(
        min_length=1,
        max_length=len(EventType),
        description="The events to receive: at least one; each at most once.",
        json_schema_extra={"uniqueItems": True},
    ),
]


class WebhookEndpointCreate(Body):
    url: Url
    events: Events

    @field_validator("events")
    @classmethod
    def _each_once(cls, events: list[EventType]) -> list[EventType]:
        if len(set(events)) != len(events):
            raise ValueError("each event may be named once")
        return events


class WebhookEndpointRead(Read):
    id: uuid.UUID
    url: str
    events: list[EventType]
    enabled: bool = Field(description="False once the endpoint answered 410 Gone: nothing more is sent.")
    disabled_reason: str | None
    created_by: uuid.UUID = Field(
        description="The id of the member who registered it (the workspace owns it)."
    )
    created_at: Timestamp
    updated_at: Timestamp


class WebhookEndpointWithSecret(WebhookEndpointRead):
    secret: str = Field(
        description=(
            "The signing secret (`whsec_…`), shown only when the endpoint is created and when the "
            "secret is rotated: keep it to verify `webhook-signature`."
        ),
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class WebhookAttemptRead(Read):
    attempted_at: Timestamp
    status_code: int | None = Field(description="The receiver's HTTP status; null when none came back.")
    duration_ms: int = Field(description="From the attempt's start to the answer's end (or the failure).")
    error: str | None = Field(
        description=(
            "Why the attempt failed, as a class: `status` (a status other than 2xx), `gone` (410), "
            "`timeout` (the attempt, resolution included, took over 10 s), `connect`, `protocol` "
            "(the receiver's answer, or the URL itself, could not be handled), `address_refused` "
            "(the host did not resolve, or resolved to an address that is refused); null when it "
            "succeeded."
        )
    )


class WebhookDeliveryRead(Read):
    id: uuid.UUID = Field(description="Also the `webhook-id` header of every attempt to send it.")
    endpoint_id: uuid.UUID
    type: EventType
    solution_id: uuid.UUID
    status: DeliveryStatus
    next_attempt_at: Timestamp | None = Field(description="When it is tried next, while it is pending.")
    retry_until: Timestamp = Field(description="Retries stop at this time: a day after the event or replay.")
    created_at: Timestamp
    payload: dict[str, Any] | None = Field(
        description="The body sent, as JSON; null once 7 days old (bodies are not kept longer)."
    )
    attempts: list[WebhookAttemptRead] = Field(description="Every attempt, oldest first.")


WebhookEndpointPage = Page[WebhookEndpointRead]
WebhookDeliveryPage = Page[WebhookDeliveryRead]
