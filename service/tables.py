"""Imports every table model, so `metadata` is complete for Alembic and the app."""

from service.outbound.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from service.planning.models import PlanningSession, Scenario
from service.solving.models import Solution, StreamTicket
from service.users.models import RevokedSession, User
from service.webhooks.models import WebhookEvent
from service.workspaces.models import Membership, Workspace

__all__ = [
    "Membership",
    "PlanningSession",
    "RevokedSession",
    "Scenario",
    "Solution",
    "StreamTicket",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "Workspace",
]
