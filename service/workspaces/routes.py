"""/api/v1/workspaces (the caller's workspaces, with their role in each) and /api/v1/users/me (the
caller, and the workspace the request acts in). Routes that create workspaces and manage members
live beside this module, not in it."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import TypeAdapter

from service.core.memo import Derived
from service.core.openapi import problem_responses
from service.deps import Workspaces
from service.users.gate import CurrentUser
from service.workspaces.gate import Member, current_member
from service.workspaces.schemas import MeRead, WorkspaceList, WorkspaceRead

router = APIRouter(prefix="/api/v1")

_ME_READ = TypeAdapter(MeRead)
# /users/me bodies by caller, workspace and role. A body is a function of the Member alone, and an SPA
# asks again and again with one token, whose caller, workspace and role the caches hand out as the
# same objects: validating and serialising once per caller takes most of the route's own work away.
_ME_BODIES: Derived[bytes] = Derived(10_000)


@router.get(
    "/users/me",
    response_model=MeRead,
    responses=problem_responses(401, 404, 503),
    tags=["users"],
    summary="The signed-in caller, and the workspace the request acts in",
)
async def me(request: Request) -> Response:
    # The gate is called rather than declared (`member: CurrentMember`): the route every client polls
    # then has no dependency for FastAPI to resolve, which costs more than everything the gate does
    # from its caches. The same gate, the same refusals; OpenAPI documents the route alike (its
    # security and 401 come from the path, not from a parameter).
    member = await current_member(request)
    # Served from the verified token and the identity and membership caches: no query on the hot path.
    body = _ME_BODIES.get(member)
    if body is None:
        body = _me_body(member)
        _ME_BODIES.put(member, body)
    return Response(body, media_type="application/json")


def _me_body(member: Member) -> bytes:
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
    return _ME_READ.dump_json(_ME_READ.validate_python(shown, from_attributes=True))


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
