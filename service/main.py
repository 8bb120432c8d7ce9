"""The app factory: settings in, a wired FastAPI app out. The one place the parts meet."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta

import httpx
from fastapi import APIRouter, FastAPI

from service import providers
from service.config import Settings, get_settings
from service.core import metrics
from service.core.bodies import BodyPolicy
from service.core.context import install, uninstall
from service.core.cors import LoggedCORSMiddleware
from service.core.db import Database
from service.core.docs import install_docs
from service.core.middleware import (
    BodyLimitMiddleware,
    BodyRule,
    MetricsMiddleware,
    RequestContextMiddleware,
)
from service.core.notify import Listener, Subscription
from service.core.observability import configure_logging
from service.core.offload import Offload
from service.core.openapi import install_openapi
from service.core.problems import install_problem_handlers
from service.core.route_index import install_route_index
from service.core.tracing import TracingMiddleware, configure_from_env
from service.dev.routes import mount_playground
from service.dev.routes import router as dev_router
from service.outbound.addresses import TargetPolicy
from service.outbound.repository import erase_owner_endpoints, erase_workspace_endpoints
from service.outbound.routes import router as outbound_router
from service.planning.imports import IMPORT_FORMATS
from service.planning.repository import erase_owner, erase_workspace
from service.planning.request_texts import RequestTexts
from service.planning.routes import IMPORT_PATH
from service.planning.routes import router as planning_router
from service.probes import liveness, readiness
from service.providers.dev import DevIssuer
from service.solver.request import SolveRequest
from service.solving.checks import SolveChecks
from service.solving.events import EventHub
from service.solving.repository import SOLUTIONS_CHANNEL, cancel_owner_solves, cancel_workspace_solves
from service.solving.routes import router as solving_router
from service.solving.views import FeatureCollection
from service.state import AppState
from service.users.identity import IdentityService
from service.users.routes import router as users_router
from service.users.store import IDENTITY_CHANNEL
from service.webhooks.ledger import LedgerJanitor
from service.webhooks.routes import router as webhooks_router
from service.workspaces.access import WorkspaceAccess
from service.workspaces.members import router as workspace_members_router
from service.workspaces.routes import router as workspaces_router
from service.workspaces.store import MEMBERSHIP_CHANNEL

log = logging.getLogger("routebook")

DESCRIPTION = """
Routebook keeps each signed-in user's route-planning sessions, scenarios and solutions.

Authenticate with a Bearer access token from the configured identity provider (Clerk, Supabase
Auth or WorkOS AuthKit; in development, the built-in dev issuer: `python -m scripts.dev_token
--email you@example.com`). Errors are `application/problem+json` (RFC 9457).
"""


def mount(app: FastAPI, router: APIRouter) -> None:
    """Add a router's routes to the app's own: FastAPI's include_router matches every request through
    a wrapper per router (~400 more Python calls per request, 17 % of a planning list's), and our
    routers carry their prefix, tags and dependencies on each route already."""
    app.router.routes.extend(router.routes)


def identity_for(db: Database, settings: Settings) -> IdentityService:
    """The identity service, with what a user's deletion erases: first their webhook endpoints (no
    solve's end is reported to them again), then their solves are stopped, then everything they
    planned."""
    return IdentityService(
        db,
        revocable_providers=providers.revocable(settings),
        erasers=(erase_owner_endpoints, cancel_owner_solves, erase_owner),
        leeway=timedelta(seconds=settings.jwt_leeway_seconds),
    )


_startup_frozen = False


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default verifying context, built once per process: reading the CA bundle is a fifth
    of an app's start-up, and every app of the process trusts the same roots."""
    return httpx.create_ssl_context()


def _freeze_startup_objects() -> None:
    """The ~130,000 objects of start-up never die; without this, each full collection walks them all
    (the event loop stopped meanwhile). Frozen, collections skip them. Once per process: a process
    that starts several apps (the tests) would otherwise freeze each one's garbage for good."""
    global _startup_frozen
    if not _startup_frozen:
        _startup_frozen = True
        gc.collect()
        gc.freeze()


def lifespan_for(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: its state (`AppState`) built from `settings`, installed, torn down."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database.from_settings(settings)
        # JWKS fetches: bounded, never following redirects (a redirect is not the provider's key set).
        http = httpx.AsyncClient(
            follow_redirects=False, timeout=settings.jwks_http_timeout, verify=_tls_context()
        )
        verifier = providers.build_verifier(settings, http)
        identity = identity_for(db, settings)
        direct_url = settings.direct_database_url
        assert direct_url is not None  # from_settings refused a missing DATABASE_URL
        listener = Listener(direct_url)
        listener.subscribe(
            Subscription(
                IDENTITY_CHANNEL, identity.announced, on_live=identity.go_live, on_lost=identity.go_blind
            )
        )
        # A deleted organisation's webhook endpoints go first (no solve's end is reported to them
        # again), then its solves stop, then everything planned in its workspace goes.
        workspaces = WorkspaceAccess(
            db, erasers=(erase_workspace_endpoints, cancel_workspace_solves, erase_workspace)
        )
        listener.subscribe(
            Subscription(
                MEMBERSHIP_CHANNEL,
                workspaces.announced,
                on_live=workspaces.go_live,
                on_lost=workspaces.go_blind,
            )
        )
        events = EventHub()
        listener.subscribe(Subscription(SOLUTIONS_CHANNEL, events.announced))
        state = AppState(
            settings=settings,
            db=db,
            http=http,
            verifier=verifier,
            identity=identity,
            workspaces=workspaces,
            listener=listener,
            events=events,
            bodies=BodyPolicy(
                inline_max_bytes=settings.json_inline_max_bytes,
                offload=Offload(settings.json_parse_workers),  # its processes start on first use
                large_writes=asyncio.Semaphore(settings.json_large_writes),
                wait_s=settings.json_large_writes_timeout,
                large_transfers=asyncio.Semaphore(settings.json_large_transfers),
            ),
            request_texts=RequestTexts(),
            solve_checks=SolveChecks(
                inline_max_bytes=settings.solve_inline_check_bytes,
                workers=settings.solve_check_workers,
                wait_s=settings.solve_check_wait_s,
            ),
            webhook_janitor=LedgerJanitor(),
            webhook_targets=TargetPolicy(settings.outbound_webhook_allow_private),
            dev_issuer=DevIssuer.load_or_create(settings.dev_key_path, settings.dev_issuer)
            if "dev" in settings.auth_providers
            else None,
        )
        install(app, state)
        listener.start()
        _freeze_startup_objects()
        # Keys are fetched in the background: a provider down at startup must not stop the app;
        # /ready says 503 until every provider has keys.
        prefetch = asyncio.create_task(verifier.start(), name="jwks-prefetch")
        try:
            yield
        finally:
            prefetch.cancel()
            await state.request_texts.close()  # before the pool it writes with
            await listener.stop()
            await verifier.aclose()  # before the client it fetches with
            await http.aclose()
            await state.bodies.offload.close()
            await state.solve_checks.close()
            await db.close()
            uninstall(app)

    return lifespan


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format or "json")
    tracing = configure_from_env(service_name="routebook-api")
    app = FastAPI(
        title="Routebook",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan_for(settings),
        openapi_url="/openapi.json",
        # /docs is served by install_docs, from local assets rather than FastAPI's CDN ones.
        docs_url=None,
        redoc_url=None,
        # Starlette's slash redirect builds an absolute URL from the client's Host header (cache
        # poisoning behind a proxy): a slashed path is a plain 404 instead.
        redirect_slashes=False,
        # FastAPI's own telemetry switches itself on whenever a global OpenTelemetry provider exists
        # and records raw paths (ids) and query strings (stream tickets): ours (TracingMiddleware)
        # records route templates only, and the process's provider is never the global one.
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
    )
    install_problem_handlers(app)

    # add_middleware wraps: the last added is the outermost. Traces (when on) and request ids wrap
    # everything (even a 413), then CORS, then the body limits.
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        limits={"/api/v1/webhooks/": settings.webhook_max_body_bytes},
        rules=[BodyRule(IMPORT_PATH, frozenset(IMPORT_FORMATS), settings.import_max_body_bytes)],
    )
    app.add_middleware(
        LoggedCORSMiddleware,
        allow_origins=settings.cors_origins or [],
        allow_credentials=True,
        allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "If-Match",
            "X-Request-ID",
            "Last-Event-ID",
            "Routebook-Workspace",
        ],
        expose_headers=["ETag", "X-Request-ID", "Location", "Retry-After"],
        max_age=600,
    )
    app.add_middleware(RequestContextMiddleware)
    if metrics.record():  # outermost: it times and counts every response, whatever answered it
        app.add_middleware(MetricsMiddleware)
    if tracing:
        # Outermost: the server span covers everything the app does, a 413 or a CORS refusal too.
        app.add_middleware(TracingMiddleware)

    mount(app, liveness)
    # The order decides between routes a request could take (the first full match wins; a 405's
    # Allow is the first partial match's), not what matching costs (install_route_index, below).
    mount(app, workspaces_router)
    mount(app, readiness)
    mount(app, users_router)
    mount(app, planning_router)
    mount(app, solving_router)
    mount(app, webhooks_router)
    mount(app, outbound_router)
    mount(app, workspace_members_router)
    if "dev" in settings.auth_providers:
        mount(app, dev_router)
        mount_playground(app)
    # The solvable request is no operation's body (it is a scenario's `request`), and GeoJSON is no
    # response model (JSON is the solution's), but both are named.
    install_openapi(app, schemas=[SolveRequest, FeatureCollection])
    install_docs(app)
    # Last, with every route in: a request is matched against the few routes its path can reach,
    # not all of them in turn (service/core/route_index.py).
    install_route_index(app.router)
    return app


def __getattr__(name: str) -> FastAPI:
    # `uvicorn service.main:app` builds the app on first access, not on import, so tests and
    # scripts can import this module without a configured environment.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
