"""DirectRoute answers every request exactly as FastAPI answers the same route declared as usual.

Each case is sent to two apps built from one set of endpoints: one whose router serves them as
DirectRoutes, one as plain APIRoutes. Status, body and headers must be the same — for requests the
direct path serves and for those it hands to FastAPI (a parameter refused or missing), with a
dependency failing first, and a router's dependency before all.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.routing import APIRoute

from service.core.errors import Forbidden, NotFound, Unauthorized
from service.core.problems import install_problem_handlers
from service.core.rendering import json_response
from service.core.routing import DirectRoute

_CALLS = "direct-test.calls"


def _called(request: Request, name: str) -> None:
    request.scope.setdefault("state", {}).setdefault(_CALLS, []).append(name)


async def gate(request: Request) -> None:
    _called(request, "gate")
    if request.headers.get("authorization") != "Bearer ok":
        raise Unauthorized("no")


async def caller(request: Request) -> str:
    _called(request, "caller")
    if request.headers.get("x-role") == "stranger":
        raise NotFound()
    return request.headers.get("x-role", "member")


async def page(
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=8)] = None,
) -> tuple[int, str | None]:
    return limit, cursor


async def if_match(tag: Annotated[str | None, Header(alias="If-Match")] = None) -> str | None:
    return tag


async def trace_id(x_trace_id: Annotated[str, Header()]) -> str:
    return x_trace_id


Caller = Annotated[str, Depends(caller)]
Page = Annotated[tuple[int, str | None], Depends(page)]


def routes(route_class: type[APIRoute]) -> APIRouter:
    router = APIRouter(prefix="/x", dependencies=[Depends(gate)], route_class=route_class)

    @router.get("/items/{item_id}")
    async def read(
        item_id: uuid.UUID, role: Caller, paging: Page, again: Caller, request: Request
    ) -> Response:
        calls = request.scope["state"][_CALLS]
        return json_response({"id": item_id, "role": role, "page": paging, "again": again, "calls": calls})

    @router.patch("/items/{item_id}")
    async def write(
        item_id: uuid.UUID,
        tag: Annotated[str | None, Depends(if_match)],
        role: Caller,
        count: Annotated[int, Query()],
    ) -> Response:
        if role == "viewer":
            raise Forbidden("read only")
        return json_response({"id": item_id, "tag": tag, "count": count}, headers={"ETag": '"2"'})

    @router.get("/traced")
    async def traced(trace: Annotated[str, Depends(trace_id)]) -> Response:
        return json_response({"trace": trace})

    @router.get("/model")
    async def model() -> dict[str, int]:  # not a Response: FastAPI serves it
        return {"a": 1}

    return router


def app_with(route_class: type[APIRoute]) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.router.routes.extend(routes(route_class).routes)
    return app


@pytest.fixture
async def clients() -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    direct, declared = app_with(DirectRoute), app_with(APIRoute)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=direct), base_url="http://t") as a,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=declared), base_url="http://t") as b,
    ):
        yield a, b


ITEM = "0193c9a8-1111-7000-8000-000000000001"
OK = {"Authorization": "Bearer ok"}

CASES: list[tuple[str, str, dict[str, str]]] = [
    ("GET", f"/x/items/{ITEM}", OK),
    ("GET", f"/x/items/{ITEM}?limit=20&cursor=abc", OK),
    ("GET", f"/x/items/{ITEM.upper()}?limit=100", OK),
    ("GET", f"/x/items/{ITEM.replace('-', '')}", OK),
    ("GET", f"/x/items/{ITEM}?limit=+20", OK),
    ("GET", f"/x/items/{ITEM}?limit=020&limit=30", OK),
    ("GET", f"/x/items/{ITEM}?cursor=", OK),
    ("GET", f"/x/items/{ITEM}?limit=0", OK),
    ("GET", f"/x/items/{ITEM}?limit=101", OK),
    ("GET", f"/x/items/{ITEM}?limit=2.0", OK),
    ("GET", f"/x/items/{ITEM}?limit=", OK),
    ("GET", f"/x/items/{ITEM}?cursor=123456789", OK),
    ("GET", "/x/items/not-an-id", OK),
    ("GET", "/x/items/not-an-id?limit=0", OK),
    ("GET", "/x/items/not-an-id", {}),
    ("GET", f"/x/items/{ITEM}", {}),
    ("GET", f"/x/items/{ITEM}?limit=0", {**OK, "X-Role": "stranger"}),
    ("GET", f"/x/items/{ITEM}", {**OK, "X-Role": "stranger"}),
    ("PATCH", f"/x/items/{ITEM}?count=3", OK),
    ("PATCH", f"/x/items/{ITEM}?count=3", {**OK, "If-Match": '"1"'}),
    ("PATCH", f"/x/items/{ITEM}?count=3", {**OK, "If-Match": ""}),
    ("PATCH", f"/x/items/{ITEM}?count=3", {**OK, "X-Role": "viewer"}),
    ("PATCH", f"/x/items/{ITEM}", OK),
    ("PATCH", f"/x/items/{ITEM}?count=x", {**OK, "X-Role": "viewer"}),
    ("DELETE", f"/x/items/{ITEM}", OK),
    ("GET", "/x/traced", OK),
    ("GET", "/x/traced", {**OK, "X-Trace-Id": "abc"}),
    ("GET", "/x/traced", {**OK, "X_Trace_Id": "abc"}),
    ("GET", "/x/model", OK),
]


def _seen(response: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    headers = {name: value for name, value in response.headers.items() if name != "content-length"}
    body = response.json() if response.content else None
    return response.status_code, body, headers


@pytest.mark.parametrize(("method", "path", "headers"), CASES)
async def test_a_direct_route_answers_as_fastapi_would(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], method: str, path: str, headers: dict[str, str]
) -> None:
    direct, declared = clients
    served = await direct.request(method, path, headers=headers)
    expected = await declared.request(method, path, headers=headers)
    assert _seen(served) == _seen(expected)


def test_only_routes_it_can_read_are_served_directly() -> None:
    served = {
        (route.path, *sorted(route.methods)): route.serves_directly
        for route in routes(DirectRoute).routes
        if isinstance(route, DirectRoute)
    }
    assert served == {
        ("/x/items/{item_id}", "GET"): True,
        ("/x/items/{item_id}", "PATCH"): True,
        ("/x/traced", "GET"): True,
        ("/x/model", "GET"): False,
    }


async def test_each_dependency_runs_once_in_fastapis_order(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    direct, _ = clients
    response = await direct.get(f"/x/items/{ITEM}", headers=OK)
    assert response.json()["calls"] == ["gate", "caller"]


def _unservable_routes() -> list[APIRoute]:
    router = APIRouter(route_class=DirectRoute)

    async def nested(role: Caller) -> str:
        return role

    async def yielding() -> AsyncIterator[int]:
        yield 1

    def blocking() -> int:
        return 1

    @router.post("/body")
    async def body(payload: dict[str, int]) -> Response:
        return Response()

    @router.get("/response")
    async def takes_response(response: Response) -> Response:
        return Response()

    @router.get("/nested")
    async def takes_nested(role: Annotated[str, Depends(nested)]) -> Response:
        return Response()

    @router.get("/yielding")
    async def takes_yielding(value: Annotated[int, Depends(yielding)]) -> Response:
        return Response()

    @router.get("/blocking")
    async def takes_blocking(value: Annotated[int, Depends(blocking)]) -> Response:
        return Response()

    @router.get("/list")
    async def takes_list(tags: Annotated[list[str], Query()]) -> Response:
        return Response()

    @router.get("/sync")
    def sync() -> Response:
        return Response()

    return [route for route in router.routes if isinstance(route, APIRoute)]


@pytest.mark.parametrize("route", _unservable_routes(), ids=lambda route: route.path)
def test_a_route_it_cannot_read_is_left_to_fastapi(route: DirectRoute) -> None:
    assert not route.serves_directly
