"""/api/v1 sessions and scenarios (a scenario's solutions are solving's: service/solving/routes.py).

Each request runs in one transaction of the caller in the request's workspace under row-level
security, opened by the route (`planning.transaction()`, or `planning.writing()`, refused with 403 for
a viewer) and committed before the response is sent. Another workspace's resource answers exactly as
a missing one: the repository raises the same NotFound for both.

The routes are `DirectRoute`s (service/core/routing.py): declared and documented as FastAPI routes,
served without FastAPI's per-request solver. Each returns its response: the records, which have
their models' shapes, written by orjson (service/core/rendering.py); a document (a scenario's
request) spliced in as PostgreSQL's own JSON text (service/core/bodies.py).
"""

from __future__ import annotations

import re
import uuid
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from service.core.bodies import json_model
from service.core.db import Database
from service.core.document_writes import DocumentWrite
from service.core.openapi import (
    READ_PROBLEMS,
    ROLE_PROBLEM,
    STALE_PROBLEM,
    WRITE_PROBLEMS,
    created,
    json_body,
    ok,
)
from service.core.pagination import PageRequest, page_request, paginate
from service.core.preconditions import ExpectedVersions, tag, tagged
from service.core.rendering import json_response
from service.core.repository import WorkspaceScope
from service.core.routing import DirectRoute
from service.deps import AppSettings, Bodies, RequestTextStore, app_state
from service.planning import payloads
from service.planning.imports import file_format, options_for, read_file
from service.planning.repository import PlanningRepository, ScenarioRecord, SessionRecord
from service.planning.schemas import (
    ImportQuery,
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
)
from service.users.gate import current_user
from service.workspaces.gate import Member, current_member

PREFIX = "/api/v1"


def planning_scope(db: Database, member: Member) -> WorkspaceScope[PlanningRepository]:
    """The member's planning in the request's workspace; the route opens the transaction."""
    return WorkspaceScope(db, member.workspace.id, member.user_id, member.role.writes, PlanningRepository)


async def caller_planning(request: Request) -> WorkspaceScope[PlanningRepository]:
    # One dependency taking the request, not one per part (the pool, the member): each part is one
    # more call on every request, and a route served directly takes only such dependencies.
    return planning_scope(app_state(request).db, await current_member(request))


Planning = Annotated[WorkspaceScope[PlanningRepository], Depends(caller_planning)]
Paging = Annotated[PageRequest, Depends(page_request)]

SessionBody = Annotated[SessionCreate, Depends(json_model(SessionCreate))]
SessionPatch = Annotated[SessionUpdate, Depends(json_model(SessionUpdate))]
# A body with a request is parsed by PostgreSQL as it is written, and checked meanwhile (payloads.py).
ScenarioBody = Annotated[DocumentWrite[ScenarioFields], Depends(payloads.read_scenario_body)]
ScenarioPatch = Annotated[DocumentWrite[ScenarioPatchFields], Depends(payloads.read_scenario_patch)]


# Authentication first, before the body is read or the database touched: a request without a
# valid token gets 401 whatever its body (current_user is cached, so it runs once).
router = APIRouter(
    prefix=PREFIX, tags=["planning"], dependencies=[Depends(current_user)], route_class=DirectRoute
)


def _tagged(
    record: SessionRecord | ScenarioRecord, status_code: int = 200, location: str | None = None
) -> Response:
    """The record as JSON, its version as the ETag (and, for a new resource, its Location)."""
    return json_response(record, status_code=status_code, headers=tagged(record.version, location))


# -- sessions ---------------------------------------------------------------------------------


@router.post(
    "/sessions",
    status_code=201,
    response_model=SessionRead,
    responses={**ROLE_PROBLEM, **WRITE_PROBLEMS, **created("Created")},
    summary="Create a planning session",
    openapi_extra=json_body(SessionCreate),
)
async def create_session(body: SessionBody, planning: Planning) -> Response:
    async with planning.writing() as repo:
        record = await repo.create_session(body.name)
    return _tagged(record, 201, f"{PREFIX}/sessions/{record.id}")


@router.get(
    "/sessions",
    response_model=SessionPage,
    responses=READ_PROBLEMS,
    summary="The caller's sessions, newest first",
)
async def list_sessions(planning: Planning, page: Paging) -> Response:
    async with planning.transaction() as repo:
        paged = await paginate(f"sessions:{repo.owner}", page, repo.list_sessions)
    return json_response(paged)


@router.get(
    "/sessions/{session_id}",
    response_model=SessionRead,
    responses={**READ_PROBLEMS, **ok("A session")},
    summary="A session",
)
async def get_session(session_id: uuid.UUID, planning: Planning) -> Response:
    async with planning.transaction() as repo:
        record = await repo.get_session(session_id)
    return _tagged(record)


@router.patch(
    "/sessions/{session_id}",
    response_model=SessionRead,
    responses={**ROLE_PROBLEM, **WRITE_PROBLEMS, **STALE_PROBLEM, **ok("Renamed")},
    summary="Rename a session (honours If-Match)",
    openapi_extra=json_body(SessionUpdate),
)
async def update_session(
    session_id: uuid.UUID,
    body: SessionPatch,
    expected: ExpectedVersions,
    planning: Planning,
) -> Response:
    async with planning.writing() as repo:
        record = await repo.rename_session(session_id, body.name, expected)
    return _tagged(record)


@router.delete(
    "/sessions/{session_id}",
    status_code=204,
    response_class=Response,
    responses={**ROLE_PROBLEM, **READ_PROBLEMS, **STALE_PROBLEM},
    summary="Delete a session with its scenarios and solutions (honours If-Match)",
)
async def delete_session(session_id: uuid.UUID, expected: ExpectedVersions, planning: Planning) -> Response:
    async with planning.writing() as repo:
        await repo.delete_session(session_id, expected)
    return Response(status_code=204)


# -- scenarios --------------------------------------------------------------------------------


@router.post(
    "/sessions/{session_id}/scenarios",
    status_code=201,
    response_model=ScenarioSummary,
    responses={**ROLE_PROBLEM, **WRITE_PROBLEMS, **created("Created; GET `Location` for the request")},
    summary="Create a scenario; its request is also frozen as the original",
    openapi_extra=json_body(ScenarioCreate),
)
async def create_scenario(
    session_id: uuid.UUID, body: ScenarioBody, planning: Planning, texts: RequestTextStore, response: Response
) -> ScenarioRecord:
    # The summary, not the request: echoing megabytes the client just sent would cost as much as
    # a GET, for nothing.
    record = await payloads.create_scenario(planning, texts, session_id, body)
    tag(response, record.version, f"{PREFIX}/scenarios/{record.id}")
    return record


# Imports take files, not JSON: the body-limit middleware admits IMPORT_FORMATS' media types on
# this path (and IMPORT_MAX_BODY_BYTES of them), and nothing else.
IMPORT_PATH = re.compile(rf"{PREFIX}/sessions/[^/]+/scenarios/import")


@router.post(
    "/sessions/{session_id}/scenarios/import",
    status_code=201,
    response_model=ScenarioSummary,
    responses={
        **ROLE_PROBLEM,
        **WRITE_PROBLEMS,
        **created("Created; GET `Location` for the request"),
        415: {"description": "Body is neither text/csv nor text/plain, or in another charset", "content": {}},
        422: {
            "description": "The file cannot be imported: `errors[].line` names each bad line (from 1, the "
            "CSV header being line 1; null for the file as a whole), at most 50; or a query parameter",
            "content": {},
        },
    },
    summary="Create a scenario from a file: a CSV of stops, or a VRPLIB instance",
    description=(
        "`Content-Type: text/csv`: a header row, then one stop per row. Columns `id`, `lat`, `lon`, "
        "`demand` (required), `service_duration`, `tw_start`, `tw_end`, `required`, `prize` (optional); "
        "the depot and the fleet come from `depot_lat`, `depot_lon`, `vehicles`, `capacity`. "
        "`Content-Type: text/plain`: a VRPLIB instance (CVRP or VRPTW, EUC_2D or EXPLICIT weights, one "
        "depot); stop ids are node numbers minus one, as VRPLIB solution files number them. UTF-8 unless "
        "the Content-Type names another charset (ISO-8859-1, Windows-1252…). The request built is checked "
        "as a solve checks it, so an imported scenario can be solved as it is; every error is reported at "
        "the line it came from. Answers 201 with the scenario, like `POST …/scenarios`."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}},
            },
        }
    },
)
async def import_scenario(
    session_id: uuid.UUID,
    query: Annotated[ImportQuery, Query()],
    request: Request,
    planning: Planning,
    bodies: Bodies,
    texts: RequestTextStore,
    settings: AppSettings,
    response: Response,
) -> ScenarioRecord:
    # A viewer is refused before the file is read: checking it is CPU work spent for nothing.
    writing = planning.writing()
    form, charset = file_format(request.headers.get("content-type", ""))
    options = options_for(form, query)
    body = await request.body()
    # Reading a file and checking the request it makes is CPU work: a large one in the offload pool.
    imported = await bodies.run(
        len(body),
        read_file,
        body,
        form,
        charset,
        options,
        settings.solve_max_stops,
        inline_max_bytes=settings.solve_inline_check_bytes,
    )
    del body
    name = query.name or imported.name or "Imported"
    async with bodies.write_slot(len(imported.document)), writing as repo:
        record = await repo.create_scenario(session_id, name, imported.document)
    payloads.request_written(planning, texts, record, len(imported.document))
    tag(response, record.version, f"{PREFIX}/scenarios/{record.id}")
    return record


@router.get(
    "/sessions/{session_id}/scenarios",
    response_model=ScenarioPage,
    responses=READ_PROBLEMS,
    summary="A session's scenarios, newest first, without their requests",
)
async def list_scenarios(session_id: uuid.UUID, planning: Planning, page: Paging) -> Response:
    async with planning.transaction() as repo:
        paged = await paginate(f"scenarios:{session_id}", page, partial(repo.list_scenarios, session_id))
    return json_response(paged)


@router.get(
    "/scenarios/{scenario_id}",
    response_model=ScenarioRead,
    responses={**READ_PROBLEMS, **ok("The scenario with its current request")},
    summary="A scenario with its current request",
)
async def get_scenario(
    scenario_id: uuid.UUID, planning: Planning, bodies: Bodies, texts: RequestTextStore
) -> Response:
    return await payloads.read_scenario(planning, bodies, texts, scenario_id)


@router.patch(
    "/scenarios/{scenario_id}",
    response_model=ScenarioSummary,
    responses={**ROLE_PROBLEM, **WRITE_PROBLEMS, **STALE_PROBLEM, **ok("Updated")},
    summary="Rename a scenario or replace its request (honours If-Match)",
    openapi_extra=json_body(ScenarioUpdate),
)
async def update_scenario(
    scenario_id: uuid.UUID,
    body: ScenarioPatch,
    expected: ExpectedVersions,
    planning: Planning,
    texts: RequestTextStore,
) -> Response:
    record = await payloads.update_scenario(planning, texts, scenario_id, body, expected)
    return _tagged(record)


@router.get(
    "/scenarios/{scenario_id}/original",
    response_model=dict[str, Any],
    responses={**READ_PROBLEMS, 200: {"description": "The request as it was at creation"}},
    summary="The scenario's original request, as created",
)
async def get_original(scenario_id: uuid.UUID, planning: Planning) -> Response:
    async with planning.transaction() as repo:
        document = await repo.get_original_request(scenario_id)
    return Response(document, media_type="application/json")


@router.post(
    "/scenarios/{scenario_id}/reset",
    response_model=ScenarioSummary,
    responses={**ROLE_PROBLEM, **READ_PROBLEMS, **STALE_PROBLEM, **ok("Reset")},
    summary="Restore the scenario's request to the original (honours If-Match)",
)
async def reset_scenario(scenario_id: uuid.UUID, expected: ExpectedVersions, planning: Planning) -> Response:
    async with planning.writing() as repo:
        record = await repo.reset_scenario(scenario_id, expected)
    return _tagged(record)


@router.delete(
    "/scenarios/{scenario_id}",
    status_code=204,
    response_class=Response,
    responses={**ROLE_PROBLEM, **READ_PROBLEMS, **STALE_PROBLEM},
    summary="Delete a scenario with its solutions (honours If-Match)",
)
async def delete_scenario(scenario_id: uuid.UUID, expected: ExpectedVersions, planning: Planning) -> Response:
    async with planning.writing() as repo:
        await repo.delete_scenario(scenario_id, expected)
    return Response(status_code=204)
