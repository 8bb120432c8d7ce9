"""/api/v1/workspaces (the caller's workspaces, with their role in each) and /api/v1/users/me (the
caller, and the workspace the request acts in). Routes that create workspaces and manage members
live beside this module, not in it."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import TypeAdapter

from service.core.openapi import problem_responses
from service.deps import Workspaces
from service.users.gate import CurrentUser
from service.workspaces.gate import CurrentMember, Member
from service.workspaces.schemas import MeRead, WorkspaceList, WorkspaceRead

router = APIRouter(prefix="/api/v1")

_ME_READ = TypeAdapter(MeRead)
# /users/me bodies by caller and workspace. A body is a function of the Member alone, and an SPA asks
# again and again with one token: validating and serialising once per caller takes ~7 µs (of ~30)
# off the route every SPA polls.
_ME_BODIES: dict[Member, bytes] = {}
_ME_BODIES_SIZE = 10_000


@router.get(
    "/users/me",
    response_model=MeRead,
    responses=problem_responses(401, 404, 503),
    tags=["users"],
    summary="The signed-in caller, and the workspace the request acts in",
)
async def me(member: CurrentMember) -> Response:
    # Served from the verified token and the identity and membership caches: no query on the hot path.
    body = _ME_BODIES.get(member)
    if body is None:
        principal = member.principal
        shown = {
            "id": principal.user_id,
            "provider": principal.provider,
            "subject": principal.subject,
            "email": principal.email,
            "roles": principal.roles,
            "org": principal.org,
            "created_at": principal.created_at,
            "workspace": {
                "id": member.workspace.id,
                "kind": member.workspace.kind,
                "name": member.workspace.name,
                "role": member.role,
            },
        }
        body = _ME_READ.dump_json(_ME_READ.validate_python(shown, from_attributes=True))
        if len(_ME_BODIES) >= _ME_BODIES_SIZE:
            _ME_BODIES.pop(next(iter(_ME_BODIES)))  # the oldest
        _ME_BODIES[member] = body
    return Response(body, media_type="application/json")


@router.get(
    "/workspaces",
    response_model=WorkspaceList,
    responses=problem_responses(401, 503),
    tags=["workspaces"],
    summary="The caller's workspaces, personal first, with the caller's role in each",
)
async def list_workspaces(principal: CurrentUser, workspaces: Workspaces) -> WorkspaceList:
    found = await workspaces.list_for(principal.user_id)
    return WorkspaceList(items=[WorkspaceRead.model_validate(item, from_attributes=True) for item in found])
