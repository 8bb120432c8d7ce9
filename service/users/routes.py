"""/api/v1/users/me and /api/v1/admin/users."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends
from starlette.responses import Response

from service.auth.deps import CurrentUser, require_role
from service.db import PrivilegedSessionDep
from service.pagination import Page, PageRequest, page_request, paginate
from service.users.models import User
from service.users.repository import list_users
from service.users.schemas import UserAdminRead, UserRead

ADMIN_USERS_SCOPE = "admin-users"


def _admin_read(user: User) -> UserAdminRead:
    return UserAdminRead(
        id=user.id,
        provider=user.provider,
        subject=user.subject,
        email=user.email,
        display_name=user.display_name,
        created_at=user.created_at,
        deleted=user.deleted_at is not None,
    )


def users_router(admin_role: str) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["users"])

    @router.get("/users/me", response_model=UserRead, summary="The signed-in caller")
    async def me(principal: CurrentUser) -> Response:
        # The hot path of every SPA: served from the verified token and the identity cache (no
        # query), and serialized once with orjson rather than validated again by a response model.
        body = {
            "id": principal.user_id,
            "provider": principal.provider,
            "subject": principal.subject,
            "email": principal.email,
            "roles": sorted(principal.roles),
            "created_at": principal.created_at,
        }
        return Response(orjson.dumps(body), media_type="application/json")

    @router.get(
        "/admin/users",
        response_model=Page[UserAdminRead],
        tags=["admin"],
        summary=f"Every user, newest first (role {admin_role!r})",
        # A dependency list, not an annotation: the role is only known when the app is built.
        dependencies=[Depends(require_role(admin_role))],
    )
    async def admin_users(
        session: PrivilegedSessionDep, page: Annotated[PageRequest, Depends(page_request)]
    ) -> Page[UserAdminRead]:
        # Across users by nature: the explicitly named privileged path, not the request role.
        return await paginate(ADMIN_USERS_SCOPE, page, partial(list_users, session), _admin_read)

    return router
