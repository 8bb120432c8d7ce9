"""`RouteIndex`: the app's router, matching a request against the few routes its path can reach.

Starlette (and FastAPI's APIRouter) match a request by trying every route in registration order, a
regular expression each, until one matches fully: with ~46 routes, GET /api/v1/scenarios/{id} (the
15th) spent ~15 us in matching and its PATCH ~20 us, several per cent of a small planning request's
own CPU, paid before any of its work.

The index sorts the routes once by what their templates pin down: the number of segments (fixed for
a route whose parameters cannot span a slash; a minimum for a Mount), the literal segments among the
first few, and the methods. A request's method and path, split the same way, pick the routes that
could match it fully (a dict lookup, memoised on the request's shape, a bounded set); only those are
tried, in registration order, and the first full match handles the request, as the router would
have. A route is left out only when it provably could not match fully: its own regex refuses the
path, or its methods exclude the request's. Whatever the index cannot read that well (a Host, a
WebSocket route, a `path` or custom convertor, a route class matching its own way) is tried for
every request, in its place.

A request no candidate matches fully goes to the router itself, which scans every route again and
answers as it always did: a 405 with Allow for a path served under other methods, the slash
redirect, low-priority routes, the 404. That costs a second scan only on those refusals. So do a
non-HTTP scope, a path ending in a newline (`$` also matches before one) and a scope FastAPI has
annotated already. The routes list is compared, route by route by identity, on every request
(~1 us): routes added, removed or replaced after start-up rebuild the index.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import is_not
from typing import Any

from fastapi.routing import APIRoute, APIRouter
from starlette.convertors import FloatConvertor, IntegerConvertor, StringConvertor, UUIDConvertor
from starlette.routing import BaseRoute, Match, Mount, Route, compile_path, get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

try:  # what FastAPI's router does with a match, beyond Starlette's scope.update
    from fastapi.routing import _route_selected, _update_scope
except ImportError:  # pragma: no cover - a FastAPI without them: the router matches alone
    _route_selected = _update_scope = None  # type: ignore[assignment]

# How many segments after the leading "/" the index reads: /api/v1/<collection> tells the app's
# routes apart; a deeper literal is left to the candidates' regexes.
DEPTH = 3

# Convertors whose regex never matches a "/": a parameter stays within its segment.
_SEGMENT_CONVERTORS = (StringConvertor, IntegerConvertor, FloatConvertor, UUIDConvertor)
_OTHER = object()  # a segment no indexed route names at that position
_MATCHES = (Route.matches, APIRoute.matches)


class _Pattern:
    """What a route's path template pins down: segments (None: a parameter), and whether further
    segments may follow (a Mount); and the methods it can match fully (None: any)."""

    __slots__ = ("methods", "open", "segments")

    def __init__(
        self, segments: tuple[str | None, ...], open: bool, methods: frozenset[str] | None = None
    ) -> None:
        self.segments = segments
        self.open = open
        self.methods = methods

    def admits(self, length: int, key: tuple[Any, ...], method: Any) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.open:
            if length < len(self.segments) + 1:
                return False
        elif length != len(self.segments):
            return False
        for literal, segment in zip(self.segments[1 : DEPTH + 1], key, strict=False):
            if literal is not None and literal != segment:
                return False
        return True


def _segments(template: str) -> tuple[str | None, ...]:
    return tuple(None if "{" in segment else segment for segment in template.split("/"))


def pattern_of(route: BaseRoute) -> _Pattern | None:
    """The route's pattern, or None when the index cannot vouch for it (it is then always tried)."""
    if isinstance(route, Mount):
        if type(route).matches is not Mount.matches or "{" in route.path:
            return None
        if route.path_regex.pattern != compile_path(route.path + "/{path:path}")[0].pattern:
            return None
        return _Pattern(_segments(route.path), open=True)
    if not isinstance(route, Route) or type(route).matches not in _MATCHES:
        return None
    for convertor in route.param_convertors.values():
        if type(convertor) not in _SEGMENT_CONVERTORS or convertor.regex != type(convertor).regex:
            return None
    if not route.path.startswith("/"):
        return None
    if route.path_regex.pattern != compile_path(route.path)[0].pattern:
        return None
    return _Pattern(
        _segments(route.path), open=False, methods=frozenset(route.methods) if route.methods else None
    )


class _Index:
    """The routes a path of a given shape can match, for one state of the routes list."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self.routes = list(routes)
        self.patterns = [pattern_of(route) for route in self.routes]
        self.literals: list[set[str]] = [set() for _ in range(DEPTH)]
        self.methods: set[str] = set()
        longest = 0
        for pattern in self.patterns:
            if pattern is None:
                continue
            self.methods.update(pattern.methods or ())
            for position, literal in enumerate(pattern.segments[1 : DEPTH + 1]):
                if literal is not None:
                    self.literals[position].add(literal)
            longest = max(longest, len(pattern.segments) + (1 if pattern.open else 0))
        # Every length from here on admits the same routes (only Mounts, all of them).
        self.cap = longest + 1
        # Finite: lengths are capped, each segment read and the method are one of the routes' own
        # or _OTHER.
        self.memo: dict[tuple[Any, ...], tuple[BaseRoute, ...]] = {}

    def candidates(self, method: str, segments: list[str]) -> tuple[BaseRoute, ...]:
        """The routes that may match the path fully for this method, in registration order."""
        length = len(segments)
        shape = (
            method if method in self.methods else _OTHER,
            length if length < self.cap else self.cap,
            *[
                segment if segment in literals else _OTHER
                for segment, literals in zip(segments[1 : DEPTH + 1], self.literals, strict=False)
            ],
        )
        found = self.memo.get(shape)
        if found is None:
            found = tuple(
                route
                for route, pattern in zip(self.routes, self.patterns, strict=True)
                if pattern is None or pattern.admits(length, shape[2:], shape[0])
            )
            self.memo[shape] = found
        return found


class RouteIndex:
    """The router's own app (its `middleware_stack`), matching through an `_Index`."""

    def __init__(self, router: APIRouter) -> None:
        self.router = router
        self.scan: ASGIApp = router.app
        self.index = _Index(router.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        router = self.router
        if scope["type"] != "http" or "fastapi" in scope or router.form_limits:
            await self.scan(scope, receive, send)
            return
        index, routes = self.index, router.routes
        # By identity: a route replaced by an equal one (same path, endpoint, methods) is a change.
        if len(routes) != len(index.routes) or any(map(is_not, routes, index.routes)):
            index = self.index = _Index(routes)
        route_path = get_route_path(scope)
        if route_path.endswith("\n"):
            await self.scan(scope, receive, send)
            return
        if "router" not in scope:
            scope["router"] = router
        for route in index.candidates(scope["method"], route_path.split("/")):
            match, child_scope = route.matches(scope)
            if match == Match.FULL:
                # What APIRouter.app does with the first route that matches fully.
                _update_scope(scope, child_scope)
                _route_selected(
                    scope=scope, path=getattr(route, "path_format", None), mount=isinstance(route, Mount)
                )
                await route.handle(scope, receive, send)
                return
        await self.scan(scope, receive, send)


def install_route_index(router: APIRouter) -> bool:
    """Match the router's requests through a RouteIndex; False (and nothing changed) when the
    router wraps its matching in middleware of its own or FastAPI lacks what the index calls."""
    if _update_scope is None or _route_selected is None:
        return False
    if router.middleware_stack != router.app:
        return False
    router.middleware_stack = RouteIndex(router)
    return True


def uninstall_route_index(router: APIRouter) -> None:
    """Back to the router's own scan (the tests compare both)."""
    router.middleware_stack = router.app
