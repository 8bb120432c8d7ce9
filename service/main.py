"""The app factory: settings in, a wired FastAPI app out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware

from service.auth.dev_issuer import DevIssuer
from service.auth.dev_routes import dev_router
from service.auth.tokens import TokenVerifier
from service.config import Settings, get_settings
from service.db import Database, create_engine
from service.errors import ServiceUnavailable
from service.middleware import BodyLimitMiddleware, RequestContextMiddleware
from service.observability import configure_logging
from service.openapi import install_openapi
from service.planning.routes import planning_router
from service.problems import install_problem_handlers
from service.users.directory import IdentityDirectory
from service.users.listener import IdentityListener
from service.users.routes import users_router
from service.webhooks.routes import webhooks_router

log = logging.getLogger("routebook")

DESCRIPTION = """
Routebook keeps each signed-in user's route-planning sessions, scenarios and solutions.

Authenticate with a Bearer access token from the configured identity provider (Clerk, Supabase
Auth or WorkOS AuthKit; in development, the built-in dev issuer: `python -m scripts.dev_token
--email you@example.com`). Errors are `application/problem+json` (RFC 9457).
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    db = Database(create_engine(settings))
    # JWKS fetches: bounded, never following redirects (a redirect is not the provider's key set).
    http = httpx.AsyncClient(follow_redirects=False, timeout=settings.jwks_http_timeout)
    dev_issuer = (
        DevIssuer.load_or_create(settings.dev_key_path, settings.dev_issuer)
        if "dev" in settings.auth_providers
        else None
    )
    verifier = TokenVerifier.from_settings(settings, http, dev_issuer.keys if dev_issuer else None)
    identity = IdentityDirectory(db)
    listener = IdentityListener(str(settings.database_url), identity)
    app.state.db, app.state.http, app.state.dev_issuer = db, http, dev_issuer
    app.state.verifier, app.state.identity, app.state.identity_listener = verifier, identity, listener

    listener.start()
    # Keys are fetched in the background: a provider down at startup must not stop the app;
    # /ready says 503 until every provider has keys.
    prefetch = asyncio.create_task(verifier.start(), name="jwks-prefetch")
    try:
        yield
    finally:
        prefetch.cancel()
        await listener.stop()
        await verifier.aclose()  # before the client it fetches with
        await http.aclose()
        await db.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format or "json")
    app = FastAPI(
        title="Routebook",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    install_problem_handlers(app)

    # Outermost first: request ids wrap everything (even a 413), then CORS, then the body limits.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins or [],
        allow_credentials=True,
        allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "If-Match", "X-Request-ID"],
        expose_headers=["ETag", "X-Request-ID", "Location"],
        max_age=600,
    )
    app.add_middleware(RequestContextMiddleware)

    _add_probes(app)
    install_openapi(app)
    for router in (users_router(settings.admin_role), planning_router(), webhooks_router()):
        mount(app, router)
    if "dev" in settings.auth_providers:
        mount(app, dev_router())
    return app


def mount(app: FastAPI, router: APIRouter) -> None:
    """Add a router's routes to the app's own router.

    FastAPI's include_router wraps each router and matches through the wrapper on every request:
    measured at ~14 µs more CPU per /users/me call (108 → 122 µs, in process), the difference
    between meeting and missing bench_auth's target. Our routers carry their prefix, tags and
    dependencies on the routes themselves and use no include-time options, so the routes can
    join the app's router as they are.
    """
    app.router.routes.extend(router.routes)


def _add_probes(app: FastAPI) -> None:
    @app.get("/health", tags=["probes"], summary="Liveness: 200 while the process serves")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready",
        tags=["probes"],
        summary="Readiness: the database answers and every provider has keys",
        responses={503: {"description": "Not ready", "content": {"application/problem+json": {}}}},
    )
    async def ready(request: Request) -> dict[str, str]:
        db: Database = request.app.state.db
        if not await db.ping(timeout=2.0):
            raise ServiceUnavailable("The database is not answering.")
        verifier = getattr(request.app.state, "verifier", None)
        if verifier is not None and not verifier.ready:
            raise ServiceUnavailable("Signing keys of an identity provider are not available yet.")
        return {"status": "ready"}


def __getattr__(name: str) -> FastAPI:
    # `uvicorn service.main:app` builds the app on first access, not on import, so tests and
    # scripts can import this module without a configured environment.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
