"""/api/v1/admin/users (/api/v1/users/me, which shows the request's workspace, is service/workspaces/routes.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from service.core.openapi import problem_responses
from service.core.pagination import Paged, PageRequest, page_request, paginate
from service.deps import AppSettings, Identity
from service.users.gate import CurrentUser, Principal, require_role
from service.users.schemas import UserAdminPage
from service.users.store import UserRecord

ADMIN_USERS_SCOPE = "admin-users"

router = APIRouter(prefix="/api/v1")


async def admin(settings: AppSettings, principal: CurrentUser) -> Principal:
    """The caller, if they hold the global ADMIN_ROLE (read from settings when the request arrives)."""
    return await require_role(settings.admin_role)(principal)


Admin = Annotated[Principal, Depends(admin)]


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
