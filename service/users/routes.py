"""/api/v1/users/me and /api/v1/admin/users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from service.openapi import problem_responses
from service.pagination import Paged, PageRequest, page_request, paginate
from service.users.gate import CurrentUser, Principal, require_role
from service.users.identity import IdentityService
from service.users.schemas import UserAdminPage, UserRead
from service.users.store import UserRecord

ADMIN_USERS_SCOPE = "admin-users"

router = APIRouter(prefix="/api/v1")


async def identity_service(request: Request) -> IdentityService:
    identity: IdentityService = request.app.state.identity
    return identity


async def admin(request: Request, principal: CurrentUser) -> Principal:
    """The caller, if they hold the global ADMIN_ROLE (read from settings when the request arrives)."""
    return await require_role(request.app.state.settings.admin_role)(principal)


Identity = Annotated[IdentityService, Depends(identity_service)]
Admin = Annotated[Principal, Depends(admin)]


@router.get(
    "/users/me",
    response_model=UserRead,
    responses=problem_responses(401, 503),
    tags=["users"],
    summary="The signed-in caller",
)
async def me(principal: CurrentUser) -> Principal:
    # Served from the verified token and the identity cache: no query on the hot path.
    return principal


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
