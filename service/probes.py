"""Liveness and readiness: /health answers while the process serves, /ready when it can do work."""

from __future__ import annotations

from fastapi import APIRouter

from service.core.errors import ServiceUnavailable
from service.core.openapi import problem_responses
from service.deps import Db, Verifier

# Two routers, so that the app can match the route every client polls between them (service.main).
liveness = APIRouter(tags=["probes"])
readiness = APIRouter(tags=["probes"])


@liveness.get("/health", summary="Liveness: 200 while the process serves")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@readiness.get(
    "/ready",
    summary="Readiness: the database answers and every provider has keys",
    responses=problem_responses(503),
)
async def ready(db: Db, verifier: Verifier) -> dict[str, str]:
    # The same problem (and Retry-After) a request would get now: unavailable, or busy.
    unavailable = await db.check(timeout=2.0)
    if unavailable is not None:
        raise unavailable()
    if not verifier.ready:
        raise ServiceUnavailable(
            "Signing keys of an identity provider are not available yet.",
            headers={"Retry-After": "5"},
            cause="identity_keys_unavailable",
        )
    return {"status": "ready"}
