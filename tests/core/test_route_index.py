"""RouteIndex picks exactly the route the router's own scan picks, for every request.

Three levels: the index never leaves out a route that matches the request fully (every route, every
path and method below); the dispatch hands the same route the same scope, or sends the same 404 / 405 /
redirect, as the router's scan (the app's routes and a router of odd ones, with root paths and
slash redirects); and the served app answers each documented path — real and odd ids, wrong
methods, slashes, unknown paths, encoded characters, the mounts, /openapi.json, /docs — with the
same status, headers and body with the index as without.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from starlette.convertors import Convertor, register_url_convertor
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import BaseRoute, Host, Match, Mount, Route, WebSocketRoute, get_route_path
from starlette.types import Message, Scope

from service.config import Settings
from service.core.route_index import (
    RouteIndex,
    _Index,
    install_route_index,
    pattern_of,
    uninstall_route_index,
)
from service.main import create_app
from tests.conftest import client_for
from tests.planning.conftest import sign_in

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
IDS = (
    str(uuid.UUID(int=7)),
    "abc",
    "1",
    "",
    "a/b",
    "é",
    "a b",
    "x\n",
    "..",
    "%2F",
    "{id}",
)


def _fill(template: str, value: str) -> str:
    out, rest = [], template
    while "{" in rest:
        head, _, tail = rest.partition("{")
        out.append(head)
        rest = tail.partition("}")[2]
        out.append(value)
    return "".join(out) + rest


def paths_for(templates: list[str]) -> list[str]:
    """Each template filled with every odd id, then slashed, cut, extended, cased and doubled."""
    paths: set[str] = {
        "",
        "/",
        "//",
        "/api",
        "/api/",
        "/api/v1",
        "/api/v1/",
        "/api/v1/nope",
        "/API/v1/users/me",
        "/api//v1/users/me",
        "/health\n",
        "/health\nx",
        "/nope/a/b/c/d/e/f/g/h",
        "/a/b/c/d/e/f/g/h/i/j/k",
    }
    for template in templates:
        for value in IDS:
            path = _fill(template, value)
            paths.update(
                {
                    path,
                    path + "/",
                    path.rstrip("/"),
                    path + "/x",
                    path + "/x/y",
                    path.rsplit("/", 1)[0],
                    path.upper(),
                    "/" + path,
                    path + "\n",
                    path.replace("/", "//", 1),
                }
            )
    return sorted(paths)


def http_scope(method: str, path: str, root_path: str = "") -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1234),
        "root_path": root_path,
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
    }


# --- the index never leaves out a route that could match ---------------------------------------


class _Hex(Convertor[str]):
    regex = "[0-9a-f]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("hexish", _Hex())


async def _endpoint(scope: Scope, receive: Any, send: Any) -> None:  # never called
    raise AssertionError


def odd_routes() -> list[BaseRoute]:
    """Routes of every kind the index reads or must leave to the scan."""
    return [
        Route("/items", _endpoint, methods=["GET"]),
        Route("/items/{item_id}", _endpoint, methods=["GET", "PUT"]),
        Route("/items/{item_id:int}", _endpoint, methods=["DELETE"]),
        Route("/items/{item_id}/parts", _endpoint),  # no methods: every method
        Route("/files/{name:path}", _endpoint, methods=["GET"]),
        Route("/files/{stem}.json", _endpoint, methods=["GET"]),
        Route("/hex/{value:hexish}", _endpoint, methods=["GET"]),
        Route("/ids/{value:uuid}", _endpoint, methods=["GET"]),
        Route("/floats/{value:float}", _endpoint, methods=["POST"]),
        Route("/items/", _endpoint, methods=["POST"]),
        Route("/a/b/c/d/e", _endpoint, methods=["GET"]),
        Route("/a/{x}/c/{y}/e", _endpoint, methods=["PATCH"]),
        WebSocketRoute("/items/{item_id}", _endpoint),
        Host("api.example.com", app=_endpoint),
        Mount("/static", app=_endpoint),
        Mount("/items/{item_id}/blob", app=_endpoint),
        Mount("/a/b", app=_endpoint),
        Mount("", app=_endpoint),
    ]


def _templates(routes: list[BaseRoute]) -> list[str]:
    return [route.path for route in routes if isinstance(route, Route | Mount | WebSocketRoute)]


def _settings() -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment="test",
        database_url="postgresql+asyncpg://routebook@127.0.0.1:5432/unused",
        auth_providers=["dev"],
        log_level="WARNING",
    )


@pytest.fixture(scope="module")
def app_routes(tmp_path_factory: pytest.TempPathFactory) -> list[BaseRoute]:
    settings = _settings().model_copy(update={"data_dir": tmp_path_factory.mktemp("index")})
    return list(create_app(settings).router.routes)


def _assert_covers(routes: list[BaseRoute]) -> None:
    index = _Index(routes)
    for path, method, root_path in itertools.product(paths_for(_templates(routes)), METHODS, ("", "/root")):
        scope = http_scope(method, root_path + path if path.startswith("/") else path, root_path)
        route_path = get_route_path(scope)
        if route_path.endswith("\n"):
            continue  # the router's own scan serves these
        candidates = index.candidates(method, route_path.split("/"))
        positions = {id(route): position for position, route in enumerate(routes)}
        kept = [positions[id(route)] for route in candidates]
        assert kept == sorted(kept), path
        for position, route in enumerate(routes):
            if route.matches(scope)[0] == Match.FULL:
                assert position in kept, (method, scope["path"], root_path, route)


def test_the_index_keeps_every_route_that_matches_the_apps(app_routes: list[BaseRoute]) -> None:
    _assert_covers(app_routes)


def test_the_index_keeps_every_route_that_matches_odd_ones() -> None:
    _assert_covers(odd_routes())


def test_routes_the_index_cannot_read_are_tried_for_every_path() -> None:
    routes = odd_routes()
    unread = [route for route in routes if pattern_of(route) is None]
    unread_paths = {getattr(route, "path", "host") for route in unread}
    assert unread_paths == {
        "/files/{name:path}",
        "/hex/{value:hexish}",
        "/items/{item_id}",
        "/items/{item_id}/blob",
        "host",
    }
    index = _Index(routes)
    for path, method in itertools.product(("/", "/zzz", "/items/1", "/no/where/x/y/z"), METHODS):
        kept = {id(route) for route in index.candidates(method, path.split("/"))}
        assert {id(route) for route in unread} <= kept


def _split(path: str) -> list[str]:
    return path.split("/")


def test_a_path_reaches_only_its_own_routes(app_routes: list[BaseRoute]) -> None:
    index = _Index(app_routes)
    scenario = _split("/api/v1/scenarios/x")
    for method in ("GET", "PATCH", "DELETE"):
        (route,) = index.candidates(method, scenario)
        assert route.path == "/api/v1/scenarios/{scenario_id}" and method in route.methods
    assert index.candidates("PUT", scenario) == ()  # the router's scan answers its 405
    assert [route.path for route in index.candidates("GET", _split("/api/v1/users/me"))] == [
        "/api/v1/users/me"
    ]
    assert index.candidates("GET", _split("/api/v1/nothing")) == ()


def test_the_memo_is_bounded_by_the_routes_not_the_requests(app_routes: list[BaseRoute]) -> None:
    index = _Index(app_routes)
    for number in range(2000):
        index.candidates(f"M{number}", f"/api/v1/scenarios/{number}".split("/"))
        index.candidates("GET", f"/x{number}/y{number}/{'z/' * (number % 40)}".split("/"))
    assert len(index.memo) < 50


# --- the dispatch does what the scan does --------------------------------------------------------


def _recording(routes: list[BaseRoute], log: list[Any]) -> Callable[[], None]:
    """Each route's handle records (route, scope) instead of running; returns the undo."""

    def recorder(route: BaseRoute) -> Callable[..., Any]:
        async def handle(scope: Scope, receive: Any, send: Any) -> None:
            log.append((id(route), dict(scope)))

        return handle

    for route in routes:
        route.handle = recorder(route)  # type: ignore[method-assign]

    def undo() -> None:
        for route in routes:
            del route.handle

    return undo


async def _dispatch(
    app: Callable[..., Any], routes: list[BaseRoute], scope: Scope
) -> tuple[list[Any], list[Message], Scope]:
    """What the app did with the scope: the routes it handed it to, what it sent, the scope after."""
    log: list[Any] = []
    undo = _recording(routes, log)
    try:
        return await _recorded(app, log, scope)
    finally:
        undo()


async def _recorded(
    app: Callable[..., Any], log: list[Any], scope: Scope
) -> tuple[list[Any], list[Message], Scope]:
    """`_dispatch` with the routes already recording into `log` (emptied first)."""
    log.clear()
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return list(log), sent, scope


async def _assert_same_dispatch(router: APIRouter, root_paths: tuple[str, ...] = ("",)) -> int:
    index = RouteIndex(router)
    compared = 0
    log: list[Any] = []
    # The routes record once for the whole comparison (the list does not change meanwhile).
    undo = _recording(router.routes, log)
    try:
        for path, method, root_path in itertools.product(
            paths_for(_templates(list(router.routes))), METHODS, root_paths
        ):
            full = root_path + path if path.startswith("/") else path
            indexed = await _recorded(index, log, http_scope(method, full, root_path))
            scanned = await _recorded(router.app, log, http_scope(method, full, root_path))
            assert indexed == scanned, (method, full, root_path)
            compared += 1
    finally:
        undo()
    return compared


async def test_the_apps_requests_go_where_the_scan_sends_them(app_routes: list[BaseRoute]) -> None:
    router = APIRouter(redirect_slashes=False)
    router.routes.extend(app_routes)
    assert await _assert_same_dispatch(router, ("", "/prefix")) > 10_000


@pytest.mark.parametrize("redirect_slashes", [True, False])
async def test_odd_routes_go_where_the_scan_sends_them(redirect_slashes: bool) -> None:
    router = APIRouter(redirect_slashes=redirect_slashes)
    router.routes.extend(odd_routes())
    await _assert_same_dispatch(router, ("", "/root"))


async def test_routes_added_later_are_indexed_too() -> None:
    router = APIRouter(redirect_slashes=False)
    router.routes.extend(odd_routes()[:3])
    index = RouteIndex(router)
    late = Route("/late/{thing}", _endpoint, methods=["GET"])
    router.routes.insert(0, late)
    log, _, _ = await _dispatch(index, router.routes, http_scope("GET", "/late/1"))
    assert log == [(id(late), log[0][1])]
    router.routes.remove(late)
    log, sent, _ = await _dispatch(index, router.routes, http_scope("GET", "/late/1"))
    assert log == [] and sent[0]["status"] == 404


async def test_a_route_replaced_by_an_equal_one_is_the_new_one_that_serves() -> None:
    router = APIRouter(redirect_slashes=False)
    router.routes.extend(odd_routes()[:3])
    index = RouteIndex(router)
    old = router.routes[0]
    new = Route(old.path, _endpoint, methods=["GET"])  # type: ignore[attr-defined]
    assert new == old and new is not old  # Starlette's routes compare by path, endpoint, methods
    router.routes[0] = new
    log, _, _ = await _dispatch(index, router.routes, http_scope("GET", "/items"))
    assert [route for route, _ in log] == [id(new)]


def test_install_refuses_a_router_with_middleware_of_its_own() -> None:
    router = APIRouter()
    wrapped = GZipMiddleware(router.app)
    router.middleware_stack = wrapped
    assert install_route_index(router) is False
    assert router.middleware_stack is wrapped
    plain = APIRouter()
    assert install_route_index(plain) is True
    assert isinstance(plain.middleware_stack, RouteIndex)
    uninstall_route_index(plain)
    assert plain.middleware_stack == plain.app


# --- the served app answers the same -------------------------------------------------------------

_VARIABLE = {"x-request-id", "date", "traceparent"}


def _requests(ids: dict[str, str]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    session, scenario = ids["session"], ids["scenario"]
    some = str(uuid.UUID(int=99))
    documented = [
        "/health",
        "/ready",
        "/openapi.json",
        "/docs",
        "/docs/assets/swagger-ui.css",
        "/docs/assets/nope.js",
        "/docs/assets/",
        "/dev/playground",
        "/dev/playground/",
        "/dev/playground/app.js",
        "/dev/playground/../../etc/passwd",
        "/dev/.well-known/jwks.json",
        "/dev/token",
        "/api/v1/users/me",
        "/api/v1/workspaces",
        "/api/v1/admin/users",
        "/api/v1/sessions",
        "/api/v1/webhook-endpoints",
        "/api/v1/webhooks/clerk",
    ]
    for template in (
        "/api/v1/sessions/{}",
        "/api/v1/sessions/{}/scenarios",
        "/api/v1/sessions/{}/scenarios/import",
        "/api/v1/scenarios/{}",
        "/api/v1/scenarios/{}/original",
        "/api/v1/scenarios/{}/reset",
        "/api/v1/scenarios/{}/solve",
        "/api/v1/scenarios/{}/solutions",
        "/api/v1/solutions/{}",
        "/api/v1/solutions/{}/cancel",
        "/api/v1/solutions/{}/events",
        "/api/v1/solutions/{}/events/ticket",
        "/api/v1/solutions/{}/compare/{}",
        "/api/v1/webhook-endpoints/{}",
        "/api/v1/webhook-endpoints/{}/rotate-secret",
        "/api/v1/webhook-endpoints/{}/deliveries",
        "/api/v1/workspaces/{}/members",
        "/api/v1/workspaces/{}/members/{}",
    ):
        for value in (session, scenario, some, "not-a-uuid", "%2Fx", "%C3%A9"):
            documented.append(template.replace("{}", value))
    for path in documented:
        for variant in (path, path + "/", path.upper()):
            for method in ("GET", "HEAD", "DELETE", "PUT", "OPTIONS"):
                yield method, variant, {}
            # Bodies a route refuses: the routing, not the write, is the point.
            yield "PATCH", variant, {"json": {"name": ""}}
            yield "POST", variant, {"content": b"{", "headers": {"content-type": "application/json"}}
    for path in (
        "/api/v1/sessions?limit=1",
        f"/api/v1/sessions/{session}/scenarios?limit=1",
        "/nope",
        "/api/v2/users/me",
        "//api/v1/users/me",
        "/api/v1/users/me%0A",
        "/%00",
    ):
        yield "GET", path, {}


async def test_the_app_answers_the_same_with_the_index_as_without(app: FastAPI) -> None:
    assert isinstance(app.router.middleware_stack, RouteIndex)
    async with client_for(app) as http:
        alice = await sign_in(app, http, "alice")
        session = await alice.call("POST", "/sessions", {"name": "Monday"})
        scenario = await alice.call(
            "POST", f"/sessions/{session.json()['id']}/scenarios", {"name": "a", "request": {}}
        )
        ids = {"session": session.json()["id"], "scenario": scenario.json()["id"]}
        # Unsafe methods come from a stranger to alice's rows: refused, they change nothing, so the
        # second answer meets the state the first one did.
        bob = await sign_in(app, http, "bob")
        compared = 0
        statuses: set[int] = set()
        for method, path, options in _requests(ids):
            answers: list[httpx.Response] = []
            for indexed in (True, False):
                if indexed:
                    install_route_index(app.router)
                else:
                    uninstall_route_index(app.router)
                caller = alice if method in ("GET", "HEAD", "OPTIONS") else bob
                headers = {**caller.headers, **options.get("headers", {})}
                rest = {key: value for key, value in options.items() if key != "headers"}
                answers.append(await http.request(method, path, headers=headers, **rest))
            with_index, without = answers
            assert with_index.status_code == without.status_code, (method, path)
            assert with_index.content == without.content, (method, path)
            assert [
                (name, value) for name, value in with_index.headers.multi_items() if name not in _VARIABLE
            ] == [(name, value) for name, value in without.headers.multi_items() if name not in _VARIABLE], (
                method,
                path,
            )
            statuses.add(with_index.status_code)
            compared += 1
        install_route_index(app.router)
    assert compared > 1500
    # The comparison saw successes, refusals, unknown routes and wrong methods alike.
    assert {200, 404, 405, 422} <= statuses
