"""/api/v1/users/me and /api/v1/admin/users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import TypeAdapter

from service.core.openapi import problem_responses
from service.core.pagination import Paged, PageRequest, page_request, paginate
from service.deps import AppSettings, Identity
from service.users.gate import CurrentUser, Principal, require_role
from service.users.schemas import UserAdminPage, UserRead
from service.users.store import UserRecord

ADMIN_USERS_SCOPE = "admin-users"

router = APIRouter(prefix="/api/v1")

_USER_READ = TypeAdapter(UserRead)
# /users/me bodies by caller. A body is a function of the Principal alone, and an SPA asks again and
# again with one token: validating and serialising once per caller takes ~7 µs (of ~30) off the
# route every SPA polls.
_ME_BODIES: dict[Principal, bytes] = {}
_ME_BODIES_SIZE = 10_000


async def admin(settings: AppSettings, principal: CurrentUser) -> Principal:
    """The caller, if they hold the global ADMIN_ROLE (read from settings when the request arrives)."""
    return await require_role(settings.admin_role)(principal)


Admin = Annotated[Principal, Depends(admin)]


@router.get(
    "/users/me",
    response_model=UserRead,
    responses=problem_responses(401, 503),
    tags=["users"],
    summary="The signed-in caller",
)
async def me(principal: CurrentUser) -> Response:
    # Served from the verified token and the identity cache: no query on the hot path.
    body = _ME_BODIES.get(principal)
    if body is None:
        body = _USER_READ.dump_json(_USER_READ.validate_python(principal, from_attributes=True))
        if len(_ME_BODIES) >= _ME_BODIES_SIZE:
            _ME_BODIES.pop(next(iter(_ME_BODIES)))  # the oldest
        _ME_BODIES[principal] = body
    return Response(body, media_type="application/json")


@router.get(
    "/admin/users",
    response_model=UserAdminPage,
    responses=problem_responses(401, 403, 422, 503),
    tags=["admin"],
    summary="Every user, newest first (global role ADMIN_ROLE)",
)
async def admin_users(
    _admin: Admin, identity: Identity, page: Annotated[PageRequest, Depends(page_request)]
) -> Paged[UserRecord]:
    return await paginate(ADMIN_USERS_SCOPE, page, identity.list_users)
