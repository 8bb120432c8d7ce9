"""/api/v1/workspaces (create) and /api/v1/workspaces/{id}/members: Routebook-managed workspaces.

A workspace the caller is not a member of answers 404 exactly as a missing one; a member who is not
its admin gets 403 for a change; a personal or provider-synced workspace refuses changes with 409;
so does a change that would leave a workspace without an admin. Bodies are checked before anything
is read, each validation error with a JSON pointer into the body (`/name`, `/role`).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from service.core.bodies import pointed_json_model
from service.core.openapi import READ_PROBLEMS, WRITE_PROBLEMS, json_body, located, problem_responses
from service.deps import Db
from service.users.gate import CurrentUser, current_user
from service.workspaces.management import CreatedWorkspace, ManagementScope, MemberRecord
from service.workspaces.management_schemas import (
    CreatedWorkspaceRead,
    MemberList,
    MemberRead,
    MemberUpdate,
    WorkspaceCreate,
)

PREFIX = "/api/v1"


async def caller_management(db: Db, principal: CurrentUser) -> ManagementScope:
    return ManagementScope(db, principal.user_id)


Managing = Annotated[ManagementScope, Depends(caller_management)]
CreateBody = Annotated[WorkspaceCreate, Depends(pointed_json_model(WorkspaceCreate))]
RoleBody = Annotated[MemberUpdate, Depends(pointed_json_model(MemberUpdate))]

router = APIRouter(prefix=PREFIX, tags=["workspaces"], dependencies=[Depends(current_user)])

CHANGE_PROBLEMS = problem_responses(403, 409)
# Creating a workspace names none, so it is never a 404.
CREATE_PROBLEMS = problem_responses(401, 413, 415, 422, 503)


@router.post(
    "/workspaces",
    status_code=201,
    response_model=CreatedWorkspaceRead,
    responses={**CREATE_PROBLEMS, **located("Created; the caller is its admin")},
    summary="Create a workspace that Routebook manages (for providers without organisations)",
    openapi_extra=json_body(WorkspaceCreate),
)
async def create_workspace(body: CreateBody, managing: Managing, response: Response) -> CreatedWorkspace:
    async with managing.transaction() as management:
        workspace = await management.create(body.name)
    response.headers["Location"] = f"{PREFIX}/workspaces/{workspace.id}/members"
    return workspace


@router.get(
    "/workspaces/{workspace_id}/members",
    response_model=MemberList,
    responses=READ_PROBLEMS,
    summary="The members of a workspace the caller belongs to, with their roles",
)
async def list_members(workspace_id: uuid.UUID, managing: Managing) -> dict[str, list[MemberRecord]]:
    async with managing.transaction() as management:
        return {"items": await management.members(workspace_id)}


@router.put(
    "/workspaces/{workspace_id}/members/{user_id}",
    response_model=MemberRead,
    responses={
        200: {"description": "The user is a member with this role (added, changed, or already so)"},
        **WRITE_PROBLEMS,
        **CHANGE_PROBLEMS,
    },
    summary="Add a user to a Routebook-managed workspace, or change their role (its admins)",
    openapi_extra=json_body(MemberUpdate),
)
async def set_member(
    workspace_id: uuid.UUID, user_id: uuid.UUID, body: RoleBody, managing: Managing
) -> MemberRecord:
    async with managing.transaction() as management:
        return await management.set_role(workspace_id, user_id, body.role)


@router.delete(
    "/workspaces/{workspace_id}/members/{user_id}",
    status_code=204,
    response_class=Response,
    responses={**READ_PROBLEMS, **CHANGE_PROBLEMS},
    summary="Remove a member from a Routebook-managed workspace (its admins)",
)
async def remove_member(workspace_id: uuid.UUID, user_id: uuid.UUID, managing: Managing) -> Response:
    async with managing.transaction() as management:
        await management.remove(workspace_id, user_id)
    return Response(status_code=204)
