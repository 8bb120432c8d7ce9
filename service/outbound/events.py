"""What an outbound webhook says: its event types, its body, and the states of a delivery."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

import orjson


class EventType(enum.StrEnum):
    SOLUTION_SUCCEEDED = "solution.succeeded"
    SOLUTION_FAILED = "solution.failed"
    SOLUTION_CANCELLED = "solution.cancelled"


EVENT_TYPES = tuple(EventType)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # due, being sent, or waiting for a retry
    SUCCEEDED = "succeeded"  # a 2xx came back
    FAILED = "failed"  # out of retries, the endpoint answered 410, or it was deleted meanwhile


DELIVERY_STATUSES = tuple(DeliveryStatus)


def solution_event(status: str) -> EventType:
    """The event of a solve that ended `status` (succeeded, failed or cancelled)."""
    return EventType(f"solution.{status}")


def solution_body(
    event: EventType,
    at: datetime,
    *,
    solution_id: uuid.UUID,
    scenario_id: uuid.UUID,
    status: str,
    distance: int | None,
) -> str:
    """The body sent (and signed) for a solve's end; `distance` only when the solve found one."""
    data: dict[str, object] = {
        "solution_id": str(solution_id),
        "scenario_id": str(scenario_id),
        "status": status,
    }
    if distance is not None:
        data["distance"] = distance
    timestamp = at.isoformat().replace("+00:00", "Z")
    return orjson.dumps({"type": str(event), "timestamp": timestamp, "data": data}).decode()
