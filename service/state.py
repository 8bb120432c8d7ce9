"""`AppState`: every part an app's requests share, built once by its lifespan (service/main.py)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from service.auth.tokens import TokenVerifier
from service.config import Settings
from service.core.bodies import BodyPolicy
from service.core.db import Database
from service.core.notify import Listener
from service.outbound.addresses import TargetPolicy
from service.planning.request_texts import RequestTexts
from service.providers.dev import DevIssuer
from service.solving.checks import SolveChecks
from service.solving.events import EventHub
from service.users.identity import IdentityService
from service.webhooks.ledger import LedgerJanitor
from service.workspaces.access import WorkspaceAccess


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    db: Database
    # JWKS fetches (bounded, never following redirects).
    http: httpx.AsyncClient
    verifier: TokenVerifier
    identity: IdentityService
    # Who is a member of which workspace, with what role: cached, kept true by NOTIFY.
    workspaces: WorkspaceAccess
    # One LISTEN connection per process: identity announcements and solve events.
    listener: Listener
    events: EventHub
    bodies: BodyPolicy
    # Large scenario requests' text, rendered and stored in the background.
    request_texts: RequestTexts
    solve_checks: SolveChecks
    webhook_janitor: LedgerJanitor
    # Where outbound webhooks may go: checked when an endpoint is registered.
    webhook_targets: TargetPolicy
    # The development issuer, when AUTH_PROVIDERS has `dev`.
    dev_issuer: DevIssuer | None
