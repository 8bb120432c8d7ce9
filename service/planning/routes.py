"""/api/v1 sessions, scenarios and solutions (contract §3).

Each request runs in one transaction as the caller under row-level security (`PlanningRepo`),
committed before the response is sent. Another user's resource answers exactly as a missing one:
the repository raises the same NotFound for both.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel

from service.auth.deps import CurrentUser, current_user
from service.db import DatabaseDep
from service.errors import PROBLEM_JSON
from service.pagination import Page, PageRequest, page_request, paginate
from service.planning.documents import JsonBody, SplicedJSONResponse, json_body
from service.planning.preconditions import ExpectedVersions, etag
from service.planning.repository import PlanningRepository, ScenarioRecord, SessionRecord, SolutionRecord
from service.planning.schemas import (
    ScenarioCreate,
    ScenarioRead,
    ScenarioSummary,
    ScenarioUpdate,
    SessionCreate,
    SessionRead,
    SessionUpdate,
    SolutionCreate,
    SolutionRead,
    SolutionSummary,
    SolutionUpdate,
)

PREFIX = "/api/v1"


async def planning_repository(db: DatabaseDep, principal: CurrentUser) -> AsyncIterator[PlanningRepository]:
    """The request's one transaction: as the app role with the caller's id set before any query."""
    async with db.user_transaction(principal.user_id) as session:
        yield PlanningRepository(session, owner=principal.user_id)


# scope="function": the transaction commits when the route returns, before the response is sent,
# so a client never sees a 201 for a write that then fails to commit.
PlanningRepo = Annotated[PlanningRepository, Depends(planning_repository, scope="function")]
Paging = Annotated[PageRequest, Depends(page_request)]

SessionBody = Annotated[JsonBody[SessionCreate], Depends(json_body(SessionCreate))]
SessionPatch = Annotated[JsonBody[SessionUpdate], Depends(json_body(SessionUpdate))]
ScenarioBody = Annotated[JsonBody[ScenarioCreate], Depends(json_body(ScenarioCreate))]
ScenarioPatch = Annotated[JsonBody[ScenarioUpdate], Depends(json_body(ScenarioUpdate))]
SolutionBody = Annotated[JsonBody[SolutionCreate], Depends(json_body(SolutionCreate))]
SolutionPatch = Annotated[JsonBody[SolutionUpdate], Depends(json_body(SolutionUpdate))]

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
_ETAG_HEADER = {
    "ETag": {
        "description": 'The version to send back in `If-Match`, e.g. `"3"`.',
        "schema": {"type": "string"},
    }
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such resource, or another user's (indistinguishable)", **_PROBLEM}
}
_STALE: dict[int | str, dict[str, Any]] = {
    412: {"description": "`If-Match` does not match the current ETag", **_PROBLEM}
}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body the route reads itself (json_body), rather than through a parameter."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def _json(model: BaseModel, *, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        model.model_dump_json(), status_code=status_code, headers=headers, media_type="application/json"
    )


def _session(record: SessionRecord) -> SessionRead:
    return SessionRead(
        id=record.id, name=record.name, created_at=record.created_at, updated_at=record.updated_at
    )


def _scenario(record: ScenarioRecord) -> ScenarioSummary:
    return ScenarioSummary(
        id=record.id,
        session_id=record.session_id,
        name=record.name,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _solution(record: SolutionRecord) -> SolutionSummary:
    return SolutionSummary(
        id=record.id,
        scenario_id=record.scenario_id,
        status=record.status,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def planning_router() -> APIRouter:
    # Authentication first, before the body is read or the database touched: a request without a
    # valid token gets 401 whatever its body (current_user is cached, so it runs once).
    router = APIRouter(prefix=PREFIX, tags=["planning"], dependencies=[Depends(current_user)])
    _sessions(router)
    _scenarios(router)
    _solutions(router)
    return router


def _sessions(router: APIRouter) -> None:
    @router.post(
        "/sessions",
        status_code=201,
        response_model=SessionRead,
        summary="Create a planning session",
        openapi_extra=_body(SessionCreate),
    )
    async def create_session(body: SessionBody, repo: PlanningRepo) -> Response:
        record = await repo.create_session(body.fields.name)
        return _json(
            _session(record), status_code=201, headers={"Location": f"{PREFIX}/sessions/{record.id}"}
        )

    @router.get("/sessions", response_model=Page[SessionRead], summary="The caller's sessions, newest first")
    async def list_sessions(repo: PlanningRepo, page: Paging) -> Page[SessionRead]:
        return await paginate(f"sessions:{repo.owner}", page, repo.list_sessions, _session)

    @router.get(
        "/sessions/{session_id}", response_model=SessionRead, responses=_NOT_FOUND, summary="A session"
    )
    async def get_session(session_id: uuid.UUID, repo: PlanningRepo) -> SessionRead:
        return _session(await repo.get_session(session_id))

    @router.patch(
        "/sessions/{session_id}",
        response_model=SessionRead,
        responses=_NOT_FOUND,
        summary="Rename a session",
        openapi_extra=_body(SessionUpdate),
    )
    async def update_session(session_id: uuid.UUID, body: SessionPatch, repo: PlanningRepo) -> SessionRead:
        return _session(await repo.rename_session(session_id, body.fields.name))

    @router.delete(
        "/sessions/{session_id}",
        status_code=204,
        response_class=Response,
        responses=_NOT_FOUND,
        summary="Delete a session with its scenarios and solutions",
    )
    async def delete_session(session_id: uuid.UUID, repo: PlanningRepo) -> Response:
        await repo.delete_session(session_id)
        return Response(status_code=204)


def _scenarios(router: APIRouter) -> None:
    @router.post(
        "/sessions/{session_id}/scenarios",
        status_code=201,
        response_model=ScenarioSummary,
        responses={
            **_NOT_FOUND,
            201: {"description": "Created; GET `Location` for the request", "headers": _ETAG_HEADER},
        },
        summary="Create a scenario; its request is also frozen as the original",
        openapi_extra=_body(ScenarioCreate),
    )
    async def create_scenario(session_id: uuid.UUID, body: ScenarioBody, repo: PlanningRepo) -> Response:
        # The summary, not the request: echoing megabytes the client just sent would cost as much
        # as a GET, for nothing.
        record = await repo.create_scenario(session_id, body.fields.name, body.raw)
        return _json(
            _scenario(record),
            status_code=201,
            headers={"Location": f"{PREFIX}/scenarios/{record.id}", "ETag": etag(record.version)},
        )

    @router.get(
        "/sessions/{session_id}/scenarios",
        response_model=Page[ScenarioSummary],
        responses=_NOT_FOUND,
        summary="A session's scenarios, newest first, without their requests",
    )
    async def list_scenarios(
        session_id: uuid.UUID, repo: PlanningRepo, page: Paging
    ) -> Page[ScenarioSummary]:
        return await paginate(
            f"scenarios:{session_id}", page, partial(repo.list_scenarios, session_id), _scenario
        )

    @router.get(
        "/scenarios/{scenario_id}",
        response_model=ScenarioRead,
        responses={
            **_NOT_FOUND,
            200: {"description": "The scenario with its current request", "headers": _ETAG_HEADER},
        },
        summary="A scenario with its current request",
    )
    async def get_scenario(scenario_id: uuid.UUID, repo: PlanningRepo) -> Response:
        record, document = await repo.get_scenario(scenario_id)
        return SplicedJSONResponse(
            _scenario(record), "request", document, headers={"ETag": etag(record.version)}
        )

    @router.patch(
        "/scenarios/{scenario_id}",
        response_model=ScenarioSummary,
        responses={**_NOT_FOUND, **_STALE, 200: {"description": "Updated", "headers": _ETAG_HEADER}},
        summary="Rename a scenario or replace its request (honours If-Match)",
        openapi_extra=_body(ScenarioUpdate),
    )
    async def update_scenario(
        scenario_id: uuid.UUID, body: ScenarioPatch, expected: ExpectedVersions, repo: PlanningRepo
    ) -> Response:
        record = await repo.update_scenario(
            scenario_id,
            name=body.fields.name,
            raw_body=body.raw if body.has("request") else None,
            expected=expected,
        )
        return _json(_scenario(record), headers={"ETag": etag(record.version)})

    @router.get(
        "/scenarios/{scenario_id}/original",
        response_model=dict[str, Any],
        responses={**_NOT_FOUND, 200: {"description": "The request as it was at creation"}},
        summary="The scenario's original request, as created",
    )
    async def get_original(scenario_id: uuid.UUID, repo: PlanningRepo) -> Response:
        return Response(await repo.get_original_request(scenario_id), media_type="application/json")

    @router.post(
        "/scenarios/{scenario_id}/reset",
        response_model=ScenarioSummary,
        responses={**_NOT_FOUND, **_STALE, 200: {"description": "Reset", "headers": _ETAG_HEADER}},
        summary="Restore the scenario's request to the original (honours If-Match)",
    )
    async def reset_scenario(
        scenario_id: uuid.UUID, expected: ExpectedVersions, repo: PlanningRepo
    ) -> Response:
        record = await repo.reset_scenario(scenario_id, expected)
        return _json(_scenario(record), headers={"ETag": etag(record.version)})

    @router.delete(
        "/scenarios/{scenario_id}",
        status_code=204,
        response_class=Response,
        responses=_NOT_FOUND,
        summary="Delete a scenario with its solutions",
    )
    async def delete_scenario(scenario_id: uuid.UUID, repo: PlanningRepo) -> Response:
        await repo.delete_scenario(scenario_id)
        return Response(status_code=204)


def _solutions(router: APIRouter) -> None:
    @router.post(
        "/scenarios/{scenario_id}/solutions",
        status_code=201,
        response_model=SolutionSummary,
        responses={
            **_NOT_FOUND,
            201: {"description": "Created; GET `Location` for the payload", "headers": _ETAG_HEADER},
        },
        summary="Record a solution of a scenario",
        openapi_extra=_body(SolutionCreate),
    )
    async def create_solution(scenario_id: uuid.UUID, body: SolutionBody, repo: PlanningRepo) -> Response:
        record = await repo.create_solution(
            scenario_id, body.fields.status, body.raw if body.has("payload") else None
        )
        return _json(
            _solution(record),
            status_code=201,
            headers={"Location": f"{PREFIX}/solutions/{record.id}", "ETag": etag(record.version)},
        )

    @router.get(
        "/scenarios/{scenario_id}/solutions",
        response_model=Page[SolutionSummary],
        responses=_NOT_FOUND,
        summary="A scenario's solutions, newest first, without their payloads",
    )
    async def list_solutions(
        scenario_id: uuid.UUID, repo: PlanningRepo, page: Paging
    ) -> Page[SolutionSummary]:
        return await paginate(
            f"solutions:{scenario_id}", page, partial(repo.list_solutions, scenario_id), _solution
        )

    @router.get(
        "/solutions/{solution_id}",
        response_model=SolutionRead,
        responses={
            **_NOT_FOUND,
            200: {"description": "The solution with its payload", "headers": _ETAG_HEADER},
        },
        summary="A solution with its payload",
    )
    async def get_solution(solution_id: uuid.UUID, repo: PlanningRepo) -> Response:
        record, document = await repo.get_solution(solution_id)
        return SplicedJSONResponse(
            _solution(record), "payload", document, headers={"ETag": etag(record.version)}
        )

    @router.patch(
        "/solutions/{solution_id}",
        response_model=SolutionSummary,
        responses={**_NOT_FOUND, **_STALE, 200: {"description": "Updated", "headers": _ETAG_HEADER}},
        summary="Change a solution's status or payload (honours If-Match)",
        openapi_extra=_body(SolutionUpdate),
    )
    async def update_solution(
        solution_id: uuid.UUID, body: SolutionPatch, expected: ExpectedVersions, repo: PlanningRepo
    ) -> Response:
        record = await repo.update_solution(
            solution_id,
            status=body.fields.status,
            raw_body=body.raw if body.has("payload") else None,
            expected=expected,
        )
        return _json(_solution(record), headers={"ETag": etag(record.version)})

    @router.delete(
        "/solutions/{solution_id}",
        status_code=204,
        response_class=Response,
        responses=_NOT_FOUND,
        summary="Delete a solution",
    )
    async def delete_solution(solution_id: uuid.UUID, repo: PlanningRepo) -> Response:
        await repo.delete_solution(solution_id)
        return Response(status_code=204)
