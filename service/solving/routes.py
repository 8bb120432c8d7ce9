"""/api/v1 solutions: a scenario's solutions (recorded by a client, or filled by a solve), and solving
itself — queue a solve, cancel it, follow it as server-sent events.

Like every planning route, each request's work runs in transactions of the caller in the request's
workspace under row-level security, and another workspace's scenario or solution answers exactly as
a missing one (404); a viewer reads and follows solves, and every write is 403. Queueing
a solve is the one route with two: the request's check (CPU) runs between them, with nothing held.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from sse_starlette import EventSourceResponse

from service.core.bodies import DocumentBody, SplicedJSONResponse, document_body, json_model
from service.core.errors import AppError, Conflict, NotFound, Unauthorized, ValidationFailed
from service.core.openapi import (
    READ_PROBLEMS,
    ROLE_PROBLEM,
    STALE_PROBLEM,
    WRITE_PROBLEMS,
    created,
    json_body,
    ok,
    problem_responses,
)
from service.core.pagination import Paged, PageRequest, page_request, paginate
from service.core.preconditions import ExpectedVersions, etag, tag
from service.core.repository import WorkspaceScope
from service.core.streaming import event_stream
from service.deps import AppSettings, Bodies, Db, Events, SolveChecking, app_state
from service.solver.outcome import SolutionStatus
from service.solver.request import RequestIssue
from service.solving import tickets
from service.solving.checks import Refusal
from service.solving.compare import compare
from service.solving.events import last_event_id, stream
from service.solving.geojson import feature_collection, prefers_geojson
from service.solving.queue import SolveJob
from service.solving.repository import SolutionRecord, SolutionRepository, StreamState
from service.solving.schemas import (
    SolutionCreate,
    SolutionFields,
    SolutionHead,
    SolutionPage,
    SolutionPatchFields,
    SolutionRead,
    SolutionSummary,
    SolutionUpdate,
    SolveOptions,
    TicketRead,
)
from service.solving.views import GEOJSON, Comparison
from service.workspaces.gate import CurrentMember, current_member

PREFIX = "/api/v1"


class TooManySolves(AppError):
    status = 429
    detail = "Too many solves are pending or running; wait for one to finish."


async def _options(request: Request, settings: AppSettings) -> SolveOptions:
    # An empty body means the defaults.
    body = await request.body()
    options = await json_model(SolveOptions)(request) if body.strip() else SolveOptions()
    limit = settings.solve_max_time_limit_s
    if options.time_limit_s > limit:
        raise ValidationFailed(
            [{"loc": ["body", "time_limit_s"], "msg": f"At most {limit} seconds.", "type": "less_than_equal"}]
        )
    return options


# A re-solve starts from a solution that has routes: one a solve finished (or stopped with its best).
_STARTING_POINTS = (SolutionStatus.SUCCEEDED, SolutionStatus.CANCELLED)


def _refused(refusal: Refusal) -> ValidationFailed:
    if refusal.where == "request":
        return _unsolvable(refusal.errors)
    return ValidationFailed(
        [
            {
                "loc": ["body", *[int(p) if p.isdigit() else p for p in error["pointer"].split("/")[1:]]],
                "pointer": error["pointer"],
                "msg": error["msg"],
                "type": error["type"],
            }
            for error in refusal.errors
        ],
        detail="The pins cannot hold in the scenario's request (`errors` point into the solve's body).",
    )


def _not_a_starting_point(msg: str, kind: str) -> ValidationFailed:
    return ValidationFailed(
        [{"loc": ["body", "from_solution"], "pointer": "/from_solution", "msg": msg, "type": kind}]
    )


def _unsolvable(errors: list[RequestIssue]) -> ValidationFailed:
    return ValidationFailed(
        [
            {
                "loc": ["scenario", "request", *[p for p in error["pointer"].split("/")[1:]]],
                "pointer": error["pointer"],
                "msg": error["msg"],
                "type": error["type"],
            }
            for error in errors
        ],
        detail="The scenario's request cannot be solved (`errors` point into it).",
    )


async def _solutions(db: Db, member: CurrentMember) -> WorkspaceScope[SolutionRepository]:
    return WorkspaceScope(db, member.workspace.id, member.user_id, member.role.writes, SolutionRepository)


Solutions = Annotated[WorkspaceScope[SolutionRepository], Depends(_solutions)]


def _at_limit(active: tuple[int, int], settings: AppSettings) -> bool:
    mine, workspace = active
    return mine >= settings.solve_max_active_per_user or workspace >= settings.solve_max_active_per_workspace


SolutionBody = Annotated[
    DocumentBody[SolutionFields], Depends(document_body(SolutionFields, "payload", required=False))
]
SolutionPatch = Annotated[
    DocumentBody[SolutionPatchFields], Depends(document_body(SolutionPatchFields, "payload", required=False))
]


router = APIRouter(prefix=PREFIX, tags=["solving"])

# The solve body, inlined (a dependency reads it): its Pin is the one a solution's `pins` names in
# the document's components, so the local definitions pydantic adds are dropped.
_SOLVE_BODY = SolveOptions.model_json_schema(ref_template="#/components/schemas/{model}")
_SOLVE_BODY.pop("$defs", None)

# A scenario edited while its request was being checked is read and checked again, at most this
# many times in all; then 409.
_CHECK_ROUNDS = 3


@router.post(
    "/scenarios/{scenario_id}/solve",
    status_code=202,
    response_model=SolutionSummary,
    responses={
        202: {"description": "Queued; follow `Location` (GET) or its `/events`"},
        **problem_responses(401, 403, 404, 409, 413, 415, 422, 429, 503),
    },
    summary="Solve the scenario's current request (a pending solution, run by a worker)",
    description=(
        "Queues a solve of the scenario's current `request`, which must be a "
        "[SolveRequest](#/components/schemas/SolveRequest) (else 422, with a JSON pointer into the request "
        "per error, at most 50; nothing is queued). The new solution is `pending`; a worker runs it "
        "(`running`, with `progress`) and ends it `succeeded`, `failed` (with a `reason`) or `cancelled`. "
        "Its payload is then a [SolutionPayload](#/components/schemas/SolutionPayload): routes with "
        "distances in metres and times in seconds from the start of the planning day, and every stop on "
        "no route with its reasons. Follow it with a "
        "GET of `Location` or its `/events`. 429 (with `Retry-After`) when the caller already has "
        "SOLVE_MAX_ACTIVE_PER_USER solves pending or running in the workspace, or the workspace has "
        "SOLVE_MAX_ACTIVE_PER_WORKSPACE; 403 for a viewer; 409 when the scenario kept changing while "
        "its request was being checked. A re-solve names `from_solution` (its routes seed the search; 404 "
        "when the caller cannot read it, 422 when it is not a succeeded or cancelled solution of this "
        "scenario) and/or `pins` (422 with a pointer such as `/pins/2/stop` when they cannot hold); "
        "nothing is queued when either is refused."
    ),
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": _SOLVE_BODY}},
        }
    },
)
async def solve(
    scenario_id: uuid.UUID,
    options: Annotated[SolveOptions, Depends(_options)],
    solutions: Solutions,
    settings: AppSettings,
    checks: SolveChecking,
    response: Response,
) -> SolutionRecord:
    """Read, check, queue: the check (CPU) runs with no connection or lock held, between a short
    transaction that reads the request and one that queues it if the scenario is still at the
    version that was checked (else it is read and checked again)."""
    pins = None if options.pins is None else [pin.model_dump(exclude_none=True) for pin in options.pins]
    for _ in range(_CHECK_ROUNDS):
        async with solutions.writing() as repo:
            version, document = await repo.scenario_to_solve(scenario_id)
            if options.from_solution is not None:
                source_scenario, source_status = await repo.replan_source(options.from_solution)
                if source_scenario != scenario_id:
                    raise _not_a_starting_point("must be a solution of this scenario", "other_scenario")
                if source_status not in _STARTING_POINTS:
                    raise _not_a_starting_point("must be a succeeded or cancelled solution", "no_plan")
            # Also before the check: a caller at the limit spends no CPU.
            if _at_limit(await repo.active_solves(), settings):
                raise TooManySolves(headers={"Retry-After": "5"})
        refusal = await checks.errors(solutions.user, document, settings.solve_max_stops, pins)
        if refusal is not None:
            raise _refused(refusal)
        del document
        async with solutions.writing() as repo:
            await repo.serialize_queueing()
            if _at_limit(await repo.active_solves(), settings):
                raise TooManySolves(headers={"Retry-After": "5"})
            record = await repo.queue(
                scenario_id,
                version,
                time_limit_s=options.time_limit_s,
                seed=options.seed,
                from_solution=options.from_solution,
                pins=pins,
            )
            if record is not None:
                await repo.enqueue(
                    SolveJob(solution_id=record.id, user_id=solutions.user, workspace_id=solutions.workspace)
                )
                response.headers["Location"] = f"{PREFIX}/solutions/{record.id}"
                return record
    raise Conflict("The scenario changed while its request was being checked; try again.")


@router.post(
    "/solutions/{solution_id}/cancel",
    status_code=202,
    response_model=SolutionSummary,
    responses={
        202: {"description": "Stopping; the final status follows"},
        **problem_responses(401, 403, 404, 409, 503),
    },
    summary="Stop a solve: it keeps the best solution found so far (cancelled), or failed if none",
)
async def cancel(solution_id: uuid.UUID, solutions: Solutions) -> SolutionRecord:
    async with solutions.writing() as repo:
        return await repo.cancel(solution_id)


@router.post(
    "/solutions/{solution_id}/events/ticket",
    status_code=200,
    response_model=TicketRead,
    responses=problem_responses(401, 404, 503),
    summary="A single-use ticket (60 s) to open the event stream from a browser's EventSource",
)
async def ticket(solution_id: uuid.UUID, solutions: Solutions) -> TicketRead:
    async with solutions.transaction() as repo:
        await repo.stream_state(solution_id)  # 404 if not theirs
        value = await repo.issue_ticket(solution_id)
    return TicketRead(ticket=value, expires_in=int(tickets.TICKET_TTL.total_seconds()))


async def _stream_member(
    solution_id: uuid.UUID,
    request: Request,
    db: Db,
    ticket: Annotated[str | None, Query(description="From POST …/events/ticket, for EventSource")] = None,
) -> tuple[uuid.UUID, uuid.UUID]:
    """(workspace, user) of the Bearer token's caller, or of a ticket (a browser's EventSource cannot
    send a header) whose user is still a member of its workspace."""
    if ticket is None:
        member = await current_member(request)
        return member.workspace.id, member.user_id
    redeemed = await tickets.redeem(db, ticket, solution_id)
    if redeemed is None:
        raise Unauthorized(
            "The stream ticket is missing, used or expired.", headers={"WWW-Authenticate": "Bearer"}
        )
    workspace_id, user_id = redeemed
    if workspace_id != user_id:  # not the personal workspace: the membership may have ended since
        access = await app_state(request).workspaces.access(workspace_id, user_id)
        if access is None or access.role is None:
            raise NotFound()
    return redeemed


@router.get(
    "/solutions/{solution_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": (
                "`progress` events (id = sequence) while it runs, then one `status` event: the final "
                "status (`succeeded`, `failed` with its `reason`, `cancelled`), or `deleted` when the "
                "solution was deleted meanwhile (with its scenario, session or user, or alone)"
            ),
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **problem_responses(401, 404, 503),
    },
    summary="Follow a solve as server-sent events (Bearer, or ?ticket= for EventSource)",
)
async def events(
    solution_id: uuid.UUID,
    db: Db,
    hub: Events,
    member: Annotated[tuple[uuid.UUID, uuid.UUID], Depends(_stream_member)],
    last_event: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description=(
                "The `id` of the last event received, to resume after it (an EventSource sends it when "
                "it reconnects). Only ASCII decimal digits up to 2147483647 name an event; any other "
                "value is treated as absent, and the stream starts from the beginning."
            ),
        ),
    ] = None,
) -> EventSourceResponse:
    resume_after = last_event_id(last_event)  # read now: nothing may fail once the response started
    # Reading only: a viewer follows solves too.
    solutions = WorkspaceScope(db, *member, may_write=False, repository=SolutionRepository)

    async def read() -> StreamState:
        async with solutions.transaction() as repo:
            return await repo.stream_state(solution_id)

    async def reread() -> StreamState | None:
        try:
            return await read()
        except NotFound:
            return None  # deleted since the stream started

    # Subscribe first, then read: an announcement committed in between is in the inbox.
    inbox = hub.open(solution_id)
    try:
        first = await read()  # 404 before any byte of the stream
    except BaseException:
        hub.close(solution_id, inbox)
        raise

    async def events_then_unsubscribe() -> AsyncIterator[dict[str, Any]]:
        try:
            async for event in stream(first, inbox, reread, resume_after):
                yield event
        finally:
            hub.close(solution_id, inbox)

    return event_stream(events_then_unsubscribe(), f"event stream of solution {solution_id}")


# -- solutions --------------------------------------------------------------------------------


@router.post(
    "/scenarios/{scenario_id}/solutions",
    status_code=201,
    response_model=SolutionSummary,
    responses={**ROLE_PROBLEM, **WRITE_PROBLEMS, **created("Created; GET `Location` for the payload")},
    summary="Record a solution of a scenario",
    openapi_extra=json_body(SolutionCreate),
)
async def create_solution(
    scenario_id: uuid.UUID, body: SolutionBody, solutions: Solutions, response: Response
) -> SolutionRecord:
    async with body.write_slot(), solutions.writing() as repo:
        record = await repo.create(scenario_id, body.fields.status, body.raw if body.has_document else None)
    tag(response, record.version, f"{PREFIX}/solutions/{record.id}")
    return record


@router.get(
    "/scenarios/{scenario_id}/solutions",
    response_model=SolutionPage,
    responses=READ_PROBLEMS,
    summary="A scenario's solutions, newest first, without their payloads",
)
async def list_solutions(
    scenario_id: uuid.UUID, solutions: Solutions, page: Annotated[PageRequest, Depends(page_request)]
) -> Paged[SolutionRecord]:
    async with solutions.transaction() as repo:
        return await paginate(f"solutions:{scenario_id}", page, partial(repo.list, scenario_id))


@router.get(
    "/solutions/{solution_id}",
    response_model=SolutionRead,
    responses={
        **READ_PROBLEMS,
        **problem_responses(406, 409),
        200: {
            "description": "The solution with its payload; as GeoJSON (`application/geo+json`) when "
            "`Accept` prefers it or `format=geojson`",
            "headers": ok("")[200]["headers"],
            "content": {GEOJSON: {"schema": {"$ref": "#/components/schemas/FeatureCollection"}}},
        },
    },
    summary="A solution with its payload, or its plan on a map (GeoJSON)",
    description=(
        "JSON by default. With `Accept: application/geo+json` (preferred over `application/json`) or "
        "`?format=geojson`, the plan as an RFC 7946 FeatureCollection: one LineString per route (its "
        "depot, its visits, its end depot; positions `[lon, lat]`) with `vehicle_type`, `vehicle`, "
        "`distance`, `duration`, then one Point per visit with `id`, `kind`, `arrival` and `route` (the "
        "index of its route). The places come from the request the solve ran on (a recorded "
        "solution: its scenario's current request). 406 when the places are planar x/y; 409 when the "
        "solution has no payload yet, or its payload or request holds no plan to draw."
    ),
)
async def get_solution(
    solution_id: uuid.UUID,
    solutions: Solutions,
    bodies: Bodies,
    view: Annotated[
        Literal["json", "geojson"] | None,
        Query(
            alias="format",
            description="`geojson` for the GeoJSON view whatever `Accept` says; `json` for JSON.",
        ),
    ] = None,
    accept: Annotated[str | None, Header(description="`application/geo+json` for the GeoJSON view.")] = None,
) -> Response:
    if view == "geojson" or (view is None and prefers_geojson(accept)):
        return await _geojson(solution_id, solutions, bodies)
    async with solutions.transaction() as repo:
        record, document = await repo.get(solution_id)
    head = SolutionHead.model_validate(record, from_attributes=True)
    return SplicedJSONResponse(head, "payload", document, headers={"ETag": etag(record.version), **_VARY})


# The representation of a solution depends on Accept: caches must key on it.
_VARY = {"Vary": "Accept"}


async def _geojson(solution_id: uuid.UUID, solutions: Solutions, bodies: Bodies) -> Response:
    async with solutions.transaction() as repo:
        version, plan, places = await repo.located_plan(solution_id)
    if plan is None:
        raise Conflict("The solution has no payload (yet): there is no plan to draw.")
    size = len(plan) + len(places or b"")
    collection = await bodies.run(size, feature_collection, plan, places)
    return Response(
        orjson.dumps(collection),
        media_type=GEOJSON,
        # A validator of its own: another representation of the solution than the JSON's.
        headers={"ETag": f'"{version}-geojson"', **_VARY},
    )


@router.get(
    "/solutions/{solution_id}/compare/{other_id}",
    response_model=Comparison,
    responses={**READ_PROBLEMS, **problem_responses(409)},
    summary="Compare two solutions' plans: totals, and where each stop went",
    description=(
        "`solution_id` is plan a, `other_id` plan b (of the same scenario or not). `kpis` holds "
        "`[a, b, b - a]` for distance, duration, cost, routes and unassigned stops (null where a "
        "payload lacks the value). `stops`: those on another vehicle or at another position in b "
        "(`moved`, from and to), served only by b (`added`) or only by a (`dropped`), and how many "
        "are `unchanged`. 404 unless both are in the request's workspace; 409 when either has no payload, or a "
        "payload that holds no plan."
    ),
)
async def compare_solutions(
    solution_id: uuid.UUID, other_id: uuid.UUID, solutions: Solutions, bodies: Bodies
) -> dict[str, Any]:
    async with solutions.transaction() as repo:
        plans = await repo.plans(solution_id, other_id)
    first, second = plans[solution_id], plans[other_id]
    for which, document in (("first", first), ("second", second)):
        if document is None:
            raise Conflict(f"The {which} solution has no payload (yet): there is no plan to compare.")
    assert first is not None and second is not None
    return await bodies.run(len(first) + len(second), compare, first, second)


@router.patch(
    "/solutions/{solution_id}",
    response_model=SolutionSummary,
    responses={**ROLE_PROBLEM, **WRITE_PROBLEMS, **STALE_PROBLEM, **ok("Updated")},
    summary="Change a solution's status or payload (honours If-Match)",
    openapi_extra=json_body(SolutionUpdate),
)
async def update_solution(
    solution_id: uuid.UUID,
    body: SolutionPatch,
    expected: ExpectedVersions,
    solutions: Solutions,
    response: Response,
) -> SolutionRecord:
    async with body.write_slot(), solutions.writing() as repo:
        record = await repo.update(
            solution_id,
            status=body.fields.status,
            raw_body=body.raw if body.has_document else None,
            expected=expected,
        )
    tag(response, record.version)
    return record


@router.delete(
    "/solutions/{solution_id}",
    status_code=204,
    response_class=Response,
    responses={**ROLE_PROBLEM, **READ_PROBLEMS, **STALE_PROBLEM},
    summary="Delete a solution (honours If-Match)",
)
async def delete_solution(
    solution_id: uuid.UUID, expected: ExpectedVersions, solutions: Solutions
) -> Response:
    async with solutions.writing() as repo:
        await repo.delete(solution_id, expected)
    return Response(status_code=204)
