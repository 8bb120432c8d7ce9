"""The dev issuer's endpoints: its JWKS and a token minting route. Mounted only with the dev issuer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from service.config import is_loopback_host
from service.core.errors import Forbidden
from service.core.openapi import problem_responses
from service.core.patterns import WHITESPACE
from service.deps import DevIssuerOrNone
from service.providers.dev import DevIssuer

MAX_DEV_TTL = 7 * 24 * 3600
# "Not @ and not whitespace" (an address the document allowed was refused with 422 while `\s` was
# used: service/patterns.py).
_ADDRESS_PART = rf"[^@{WHITESPACE}]+"
EMAIL_PATTERN = rf"^{_ADDRESS_PART}@{_ADDRESS_PART}$"


class DevTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Annotated[str, Field(min_length=3, max_length=320, pattern=EMAIL_PATTERN)]
    subject: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    roles: Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]], Field(max_length=50)] = []
    ttl_seconds: Annotated[int, Field(ge=1, le=MAX_DEV_TTL)] = 3600


class DevTokenRead(BaseModel):
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 (a scheme name, not a secret)
    expires_in: int


def dev_subject(email: str) -> str:
    """The same email always signs in as the same dev user."""
    return f"dev|{email.strip().lower()}"


def mint_dev_token(issuer: DevIssuer, body: DevTokenCreate) -> DevTokenRead:
    token = issuer.mint(
        subject=body.subject or dev_subject(body.email),
        email=body.email,
        roles=body.roles,
        ttl_seconds=body.ttl_seconds,
    )
    return DevTokenRead(access_token=token, expires_in=body.ttl_seconds)


router = APIRouter(prefix="/dev", tags=["dev issuer (development only)"])


def _mounted(issuer: DevIssuer | None) -> DevIssuer:
    # These routes are mounted only when the dev issuer is configured (service/main.py).
    assert issuer is not None, "the dev routes are mounted without a dev issuer"
    return issuer


@router.get("/.well-known/jwks.json", summary="The dev issuer's public keys")
async def jwks(issuer: DevIssuerOrNone) -> dict[str, Any]:
    return _mounted(issuer).jwks()


@router.post(
    "/token",
    response_model=DevTokenRead,
    summary="Mint a dev access token (from this machine only)",
    # 400: FastAPI's own answer to a body it cannot decode at all (not UTF-8); 422 for bad JSON.
    responses=problem_responses(400, 403, 422),
)
async def token(request: Request, body: DevTokenCreate, issuer: DevIssuerOrNone) -> DevTokenRead:
    # Defence in depth: a development server started on 0.0.0.0 must not hand any visitor an
    # admin token. Only a client on this machine may mint.
    if request.client is None or not is_loopback_host(request.client.host):
        raise Forbidden("Dev tokens are minted only for clients on this machine.")
    return mint_dev_token(_mounted(issuer), body)


PLAYGROUND = Path(__file__).parent / "static" / "playground"


@router.get("/playground", include_in_schema=False)
async def playground_root() -> RedirectResponse:
    # A relative Location (never built from the client's Host): the page's own assets are relative
    # to the directory, so it must be served with its trailing slash.
    return RedirectResponse("/dev/playground/", status_code=308)


def mount_playground(app: Any) -> None:
    """The playground: plain static files, served only where the dev issuer is (never in production)."""
    app.mount("/dev/playground", StaticFiles(directory=PLAYGROUND, html=True), name="playground")
