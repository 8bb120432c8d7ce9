"""/api/v1 sessions, scenarios and solutions.

Each request runs in one transaction as the caller under row-level security, opened by the route
(`planning.transaction()`) and committed before the response is sent. Another user's resource
answers exactly as a missing one: the repository raises the same NotFound for both. Responses are
validated by their declared models (records are read by attribute); the documents (a scenario's
request, a solution's payload) are spliced in as PostgreSQL's own JSON text (documents.py).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from service.db import Database
from service.openapi import problem_responses
from service.pagination import Paged, PageRequest, page_request, paginate
from service.planning.documents import DocumentBody, SplicedJSONResponse, document_body, json_model
from service.planning.preconditions import ExpectedVersions, etag
from service.planning.repository import PlanningRepository, ScenarioRecord, SessionRecord, SolutionRecord
from service.planning.schemas import (
    ScenarioCreate,
    ScenarioFields,
    ScenarioPage,
    ScenarioPatchFields,
    ScenarioRead,
    ScenarioSummary,
    ScenarioUpdate,
    SessionCreate,
    SessionPage,
    SessionRead,
    SessionUpdate,
    SolutionCreate,
    SolutionFields,
    SolutionHead,
    SolutionPage,
    SolutionPatchFields,
    SolutionRead,
    SolutionSummary,
    SolutionUpdate,
)
from service.users.gate import CurrentUser, current_user

PREFIX = "/api/v1"


@dataclass(frozen=True, slots=True)
class CallerPlanning:
    """The caller's planning data, reached one transaction at a time."""

    db: Database
    owner: uuid.UUID

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PlanningRepository]:
        """The request's one transaction: as the app role, with the caller's id set in the same round
        trip. A route's work runs inside the block, so it commits before the response is sent and
        a client never sees a 201 for a write that then fails to commit."""
        async with self.db.as_user(self.owner) as conn:
            yield PlanningRepository(conn, owner=self.owner)


async def caller_planning(request: Request, principal: CurrentUser) -> CallerPlanning:
    # A plain dependency, the transaction opened by the route: a yield dependency cost ~80 µs per
    # request in FastAPI's exit-stack machinery, an eighth of a scenario read.
    return CallerPlanning(request.app.state.db, principal.user_id)


Planning = Annotated[CallerPlanning, Depends(caller_planning)]
Paging = Annotated[PageRequest, Depends(page_request)]

SessionBody = Annotated[SessionCreate, Depends(json_model(SessionCreate))]
SessionPatch = Annotated[SessionUpdate, Depends(json_model(SessionUpdate))]
# A body with a document is written inside `async with body.write_slot(), planning.transaction()`:
# a large body's write slot is taken before a database connection, and released after the commit.
ScenarioBody = Annotated[
    DocumentBody[ScenarioFields], Depends(document_body(ScenarioFields, "request", required=True))
]
ScenarioPatch = Annotated[
    DocumentBody[ScenarioPatchFields], Depends(document_body(ScenarioPatchFields, "request", required=False))
]
SolutionBody = Annotated[
    DocumentBody[SolutionFields], Depends(document_body(SolutionFields, "payload", required=False))
]
SolutionPatch = Annotated[
    DocumentBody[SolutionPatchFields], Depends(document_body(SolutionPatchFields, "payload", required=False))
]

_ETAG_HEADER = {
    "ETag": {
        "description": 'The version to send back in `If-Match`, e.g. `"3"`.',
        "required": True,
        "schema": {"type": "string"},
    }
}
_LOCATION_HEADER = {
    "Location": {
        "description": "The new resource's path, e.g. `/api/v1/sessions/{id}`.",
        "required": True,
        "schema": {"type": "string"},
    }
}
# Every planning route: a token, the database; the ones with a body add 413/415/422.
_READ = problem_responses(401, 404, 422, 503)
_WRITE = problem_responses(401, 404, 413, 415, 422, 503)
_STALE = problem_responses(412)


def _body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body read by a dependency rather than a body parameter."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _tagged(response: Response, version: int, location: str | None = None) -> None:
    response.headers["ETag"] = etag(version)
    if location is not None:
        response.headers["Location"] = location


def _created(description: str) -> dict[int | str, dict[str, Any]]:
    return {201: {"description": description, "headers": {**_ETAG_HEADER, **_LOCATION_HEADER}}}


def _ok(description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "headers": _ETAG_HEADER}}


# Authentication first, before the body is read or the database touched: a request without a
# valid token gets 401 whatever its body (current_user is cached, so it runs once).
router = APIRouter(prefix=PREFIX, tags=["planning"], dependencies=[Depends(current_user)])

# -- sessions ---------------------------------------------------------------------------------


@router.post(
    "/sessions",
    status_code=201,
    response_model=SessionRead,
    responses={**_WRITE, **_created("Created")},
    summary="Create a planning session",
    openapi_extra=_body(SessionCreate),
)
async def create_session(body: SessionBody, planning: Planning, response: Response) -> SessionRecord:
    async with planning.transaction() as repo:
        record = await repo.create_session(body.name)
    _tagged(response, record.version, f"{PREFIX}/sessions/{record.id}")
    return record


@router.get(
    "/sessions", response_model=SessionPage, responses=_READ, summary="The caller's sessions, newest first"
)
async def list_sessions(planning: Planning, page: Paging) -> Paged[SessionRecord]:
    async with planning.transaction() as repo:
        return await paginate(f"sessions:{repo.owner}", page, repo.list_sessions)


@router.get(
    "/sessions/{session_id}",
    response_model=SessionRead,
    responses={**_READ, **_ok("A session")},
    summary="A session",
)
async def get_session(session_id: uuid.UUID, planning: Planning, response: Response) -> SessionRecord:
    async with planning.transaction() as repo:
        record = await repo.get_session(session_id)
    _tagged(response, record.version)
    return record


@router.patch(
    "/sessions/{session_id}",
    response_model=SessionRead,
    responses={**_WRITE, **_STALE, **_ok("Renamed")},
    summary="Rename a session (honours If-Match)",
    openapi_extra=_body(SessionUpdate),
)
async def update_session(
    session_id: uuid.UUID,
    body: SessionPatch,
    expected: ExpectedVersions,
    planning: Planning,
    response: Response,
) -> SessionRecord:
    async with planning.transaction() as repo:
        record = await repo.rename_session(session_id, body.name, expected)
    _tagged(response, record.version)
    return record


@router.delete(
    "/sessions/{session_id}",
    status_code=204,
    response_class=Response,
    responses={**_READ, **_STALE},
    summary="Delete a session with its scenarios and solutions (honours If-Match)",
)
async def delete_session(session_id: uuid.UUID, expected: ExpectedVersions, planning: Planning) -> Response:
    async with planning.transaction() as repo:
        await repo.delete_session(session_id, expected)
    return Response(status_code=204)


# -- scenarios --------------------------------------------------------------------------------


@router.post(
    "/sessions/{session_id}/scenarios",
    status_code=201,
    response_model=ScenarioSummary,
    responses={**_WRITE, **_created("Created; GET `Location` for the request")},
    summary="Create a scenario; its request is also frozen as the original",
    openapi_extra=_body(ScenarioCreate),
)
async def create_scenario(
    session_id: uuid.UUID, body: ScenarioBody, planning: Planning, response: Response
) -> ScenarioRecord:
    # The summary, not the request: echoing megabytes the client just sent would cost as much as
    # a GET, for nothing.
    async with body.write_slot(), planning.transaction() as repo:
        record = await repo.create_scenario(session_id, body.fields.name, body.raw)
    _tagged(response, record.version, f"{PREFIX}/scenarios/{record.id}")
    return record


@router.get(
    "/sessions/{session_id}/scenarios",
    response_model=ScenarioPage,
    responses=_READ,
    summary="A session's scenarios, newest first, without their requests",
)
async def list_scenarios(session_id: uuid.UUID, planning: Planning, page: Paging) -> Paged[ScenarioRecord]:
    async with planning.transaction() as repo:
        return await paginate(f"scenarios:{session_id}", page, partial(repo.list_scenarios, session_id))


@router.get(
    "/scenarios/{scenario_id}",
    response_model=ScenarioRead,
    responses={**_READ, **_ok("The scenario with its current request")},
    summary="A scenario with its current request",
)
async def get_scenario(scenario_id: uuid.UUID, planning: Planning) -> Response:
    async with planning.transaction() as repo:
        record, document = await repo.get_scenario(scenario_id)
    summary = ScenarioSummary.model_validate(record, from_attributes=True)
    return SplicedJSONResponse(summary, "request", document, headers={"ETag": etag(record.version)})


@router.patch(
    "/scenarios/{scenario_id}",
    response_model=ScenarioSummary,
    responses={**_WRITE, **_STALE, **_ok("Updated")},
    summary="Rename a scenario or replace its request (honours If-Match)",
    openapi_extra=_body(ScenarioUpdate),
)
async def update_scenario(
    scenario_id: uuid.UUID,
    body: ScenarioPatch,
    expected: ExpectedVersions,
    planning: Planning,
    response: Response,
) -> ScenarioRecord:
    async with body.write_slot(), planning.transaction() as repo:
        record = await repo.update_scenario(
            scenario_id,
            name=body.fields.name,
            raw_body=body.raw if body.has_document else None,
            expected=expected,
        )
    _tagged(response, record.version)
    return record


@router.get(
    "/scenarios/{scenario_id}/original",
    response_model=dict[str, Any],
    responses={**_READ, 200: {"description": "The request as it was at creation"}},
    summary="The scenario's original request, as created",
)
async def get_original(scenario_id: uuid.UUID, planning: Planning) -> Response:
    async with planning.transaction() as repo:
        document = await repo.get_original_request(scenario_id)
    return Response(document, media_type="application/json")


@router.post(
    "/scenarios/{scenario_id}/reset",
    response_model=ScenarioSummary,
    responses={**_READ, **_STALE, **_ok("Reset")},
    summary="Restore the scenario's request to the original (honours If-Match)",
)
async def reset_scenario(
    scenario_id: uuid.UUID, expected: ExpectedVersions, planning: Planning, response: Response
) -> ScenarioRecord:
    async with planning.transaction() as repo:
        record = await repo.reset_scenario(scenario_id, expected)
    _tagged(response, record.version)
    return record


@router.delete(
    "/scenarios/{scenario_id}",
    status_code=204,
    response_class=Response,
    responses={**_READ, **_STALE},
    summary="Delete a scenario with its solutions (honours If-Match)",
)
async def delete_scenario(scenario_id: uuid.UUID, expected: ExpectedVersions, planning: Planning) -> Response:
    async with planning.transaction() as repo:
        await repo.delete_scenario(scenario_id, expected)
    return Response(status_code=204)


# -- solutions --------------------------------------------------------------------------------


@router.post(
    "/scenarios/{scenario_id}/solutions",
    status_code=201,
    response_model=SolutionSummary,
    responses={**_WRITE, **_created("Created; GET `Location` for the payload")},
    summary="Record a solution of a scenario",
    openapi_extra=_body(SolutionCreate),
)
async def create_solution(
    scenario_id: uuid.UUID, body: SolutionBody, planning: Planning, response: Response
) -> SolutionRecord:
    async with body.write_slot(), planning.transaction() as repo:
        record = await repo.create_solution(
            scenario_id, body.fields.status, body.raw if body.has_document else None
        )
    _tagged(response, record.version, f"{PREFIX}/solutions/{record.id}")
    return record


@router.get(
    "/scenarios/{scenario_id}/solutions",
    response_model=SolutionPage,
    responses=_READ,
    summary="A scenario's solutions, newest first, without their payloads",
)
async def list_solutions(scenario_id: uuid.UUID, planning: Planning, page: Paging) -> Paged[SolutionRecord]:
    async with planning.transaction() as repo:
        return await paginate(f"solutions:{scenario_id}", page, partial(repo.list_solutions, scenario_id))


@router.get(
    "/solutions/{solution_id}",
    response_model=SolutionRead,
    responses={**_READ, **_ok("The solution with its payload")},
    summary="A solution with its payload",
)
async def get_solution(solution_id: uuid.UUID, planning: Planning) -> Response:
    async with planning.transaction() as repo:
        record, document = await repo.get_solution(solution_id)
    head = SolutionHead.model_validate(record, from_attributes=True)
    return SplicedJSONResponse(head, "payload", document, headers={"ETag": etag(record.version)})


@router.patch(
    "/solutions/{solution_id}",
    response_model=SolutionSummary,
    responses={**_WRITE, **_STALE, **_ok("Updated")},
    summary="Change a solution's status or payload (honours If-Match)",
    openapi_extra=_body(SolutionUpdate),
)
async def update_solution(
    solution_id: uuid.UUID,
    body: SolutionPatch,
    expected: ExpectedVersions,
    planning: Planning,
    response: Response,
) -> SolutionRecord:
    async with body.write_slot(), planning.transaction() as repo:
        record = await repo.update_solution(
            solution_id,
            status=body.fields.status,
            raw_body=body.raw if body.has_document else None,
            expected=expected,
        )
    _tagged(response, record.version)
    return record


@router.delete(
    "/solutions/{solution_id}",
    status_code=204,
    response_class=Response,
    responses={**_READ, **_STALE},
    summary="Delete a solution (honours If-Match)",
)
async def delete_solution(solution_id: uuid.UUID, expected: ExpectedVersions, planning: Planning) -> Response:
    async with planning.transaction() as repo:
        await repo.delete_solution(solution_id, expected)
    return Response(status_code=204)
