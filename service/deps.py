"""What a route needs, as typed dependency aliases: `db: Db`, `identity: Identity`, `hub: Events`…

Each reads one part of the app's state (`service.state.AppState`, built by the lifespan). The types
are imported for the type checker only: a domain's routes import this module, and this module
imports no domain at run time, so no package imports one that imports it back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request

from service.core.context import state_of

if TYPE_CHECKING:
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
    from service.state import AppState
    from service.users.identity import IdentityService
    from service.webhooks.ledger import LedgerJanitor
    from service.workspaces.access import WorkspaceAccess


def app_state(holder: Starlette | HTTPConnection) -> AppState:
    """The app's state, typed, for code that is not a route (the gate, tests, scripts)."""
    state: AppState = state_of(holder)
    return state


async def _settings(request: Request) -> Settings:
    return app_state(request).settings


async def _bodies(request: Request) -> BodyPolicy:
    return app_state(request).bodies


async def _request_texts(request: Request) -> RequestTexts:
    return app_state(request).request_texts


async def _db(request: Request) -> Database:
    return app_state(request).db


async def _identity(request: Request) -> IdentityService:
    return app_state(request).identity


async def _workspaces(request: Request) -> WorkspaceAccess:
    return app_state(request).workspaces


async def _verifier(request: Request) -> TokenVerifier:
    return app_state(request).verifier


async def _listener(request: Request) -> Listener:
    return app_state(request).listener


async def _events(request: Request) -> EventHub:
    return app_state(request).events


async def _solve_checks(request: Request) -> SolveChecks:
    return app_state(request).solve_checks


async def _webhook_janitor(request: Request) -> LedgerJanitor:
    return app_state(request).webhook_janitor


async def _webhook_targets(request: Request) -> TargetPolicy:
    return app_state(request).webhook_targets


async def _dev_issuer(request: Request) -> DevIssuer | None:
    return app_state(request).dev_issuer


AppSettings = Annotated["Settings", Depends(_settings)]
Db = Annotated["Database", Depends(_db)]
# Where CPU work on a request's input runs: inline when small, else in the offload processes.
Bodies = Annotated["BodyPolicy", Depends(_bodies)]
# Where a large scenario request's text is asked for after a write or a read that rendered it.
RequestTextStore = Annotated["RequestTexts", Depends(_request_texts)]
Identity = Annotated["IdentityService", Depends(_identity)]
Verifier = Annotated["TokenVerifier", Depends(_verifier)]
Workspaces = Annotated["WorkspaceAccess", Depends(_workspaces)]
Notifications = Annotated["Listener", Depends(_listener)]
Events = Annotated["EventHub", Depends(_events)]
SolveChecking = Annotated["SolveChecks", Depends(_solve_checks)]
WebhookJanitor = Annotated["LedgerJanitor", Depends(_webhook_janitor)]
WebhookTargets = Annotated["TargetPolicy", Depends(_webhook_targets)]
DevIssuerOrNone = Annotated["DevIssuer | None", Depends(_dev_issuer)]
