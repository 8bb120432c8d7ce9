"""`DirectRoute`: a route FastAPI documents and checks, served without its per-request solver.

FastAPI resolves a route's parameters and dependencies on every request through a generic solver
(cache keys, scopes, exit stacks, a validation pass per parameter source) and then validates and
serialises what the endpoint returned: on a small planning request that was over half the server's
own CPU. A `DirectRoute` is an `APIRoute` as declared — the OpenAPI document, the parameters'
validators and the response model all come from FastAPI's reading of the endpoint — whose requests
are served by a plain loop: each path, query and header parameter validated by FastAPI's own
validator, each dependency awaited in FastAPI's order (the router's first), then the endpoint, whose
Response is sent as it is.

A request with a parameter FastAPI would refuse, or one missing, goes to the route's FastAPI
handler instead, untouched: its 422 (and whatever a dependency answers first) reads exactly as it
always did. Nothing with an effect runs before that choice is made.

A route is served directly only when all of it can be: an async endpoint returning a Response;
dependencies that are async functions taking the request and their own scalar parameters (no
sub-dependencies, no `yield`); path, query and header parameters of one scalar type, optional or
not. Any other route on a router of DirectRoutes is served by FastAPI as usual (`serves_directly`
says which).
"""

from __future__ import annotations

import copy
import inspect
import types
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from fastapi import params
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_typed_return_annotation
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

_SCALARS = frozenset({uuid.UUID, int, str})
Source = Literal["path", "query", "header"]


@dataclass(frozen=True, slots=True)
class _Parameter:
    name: str
    source: Source
    key: str  # as the request names it
    field: Any  # FastAPI's ModelField: its validator is the one FastAPI uses
    required: bool


@dataclass(frozen=True, slots=True)
class _Call:
    """A dependency (or the endpoint) and what it takes from the request."""

    call: Callable[..., Awaitable[Any]]
    names: tuple[str, ...]  # the endpoint's parameters it fills (none: a router's dependency)
    request_name: str | None
    parameters: tuple[_Parameter, ...]


class _NotDirect(Exception):
    """This route takes something only FastAPI's solver provides."""


def _scalar(annotation: Any) -> bool:
    if get_origin(annotation) in (Union, types.UnionType):
        members = [member for member in get_args(annotation) if member is not type(None)]
        return len(members) == 1 and members[0] in _SCALARS
    return annotation in _SCALARS


def _parameters(dependant: Dependant) -> tuple[_Parameter, ...]:
    if dependant.body_params or dependant.cookie_params:
        raise _NotDirect("a body or cookie parameter")
    read: list[_Parameter] = []
    sources: tuple[tuple[Source, list[Any]], ...] = (
        ("path", dependant.path_params),
        ("query", dependant.query_params),
        ("header", dependant.header_params),
    )
    for source, fields in sources:
        for field in fields:
            info = field.field_info
            key = field.alias
            if (
                not _scalar(info.annotation)
                or info.validation_alias not in (None, key)
                or info.validate_default
            ):
                raise _NotDirect(f"parameter {field.name!r}")
            if isinstance(info, params.Header) and info.convert_underscores and key == field.name:
                key = key.replace("_", "-")
            read.append(_Parameter(field.name, source, key, field, info.is_required()))
    return tuple(read)


def _call(dependant: Dependant, names: tuple[str, ...]) -> _Call:
    call = dependant.call
    if not inspect.iscoroutinefunction(call):
        raise _NotDirect(f"{call!r} is not an async function")
    special = (
        dependant.websocket_param_name,
        dependant.http_connection_param_name,
        dependant.response_param_name,
        dependant.background_tasks_param_name,
        dependant.security_scopes_param_name,
    )
    if any(special):
        raise _NotDirect("a parameter the solver provides")
    return _Call(call, names, dependant.request_param_name, _parameters(dependant))


def _plan(route: APIRoute) -> tuple[tuple[_Call, ...], _Call]:
    """(the dependencies in FastAPI's order, each once; the endpoint), or _NotDirect."""
    returns = get_typed_return_annotation(route.endpoint)
    if not (inspect.isclass(returns) and issubclass(returns, Response)):
        raise _NotDirect("the endpoint does not return a Response")
    order: list[Callable[..., Any]] = []
    names: dict[Callable[..., Any], list[str]] = {}
    dependants: dict[Callable[..., Any], Dependant] = {}
    for dependency in route.dependant.dependencies:
        call = dependency.call
        if call is None or dependency.dependencies:
            raise _NotDirect("a dependency with dependencies of its own")
        if not dependency.use_cache and call in dependants:
            raise _NotDirect("a dependency called twice")
        if call not in dependants:
            order.append(call)
            names[call] = []
            dependants[call] = dependency
        if dependency.name:
            names[call].append(dependency.name)
    calls = tuple(_call(dependants[call], tuple(names[call])) for call in order)
    return calls, _call(route.dependant, ())


def _read(request: Request, parameters: tuple[_Parameter, ...]) -> dict[str, Any] | None:
    """The parameters' values as FastAPI's validators make them; None when one is refused or missing."""
    values: dict[str, Any] = {}
    for parameter in parameters:
        source: Mapping[str, Any]
        if parameter.source == "path":
            source = request.path_params
        elif parameter.source == "query":
            source = request.query_params
        else:
            source = request.headers
        raw = source.get(parameter.key)
        if raw is None:
            if parameter.required:
                return None
            values[parameter.name] = copy.deepcopy(parameter.field.default)
            continue
        value, errors = parameter.field.validate(raw, values, loc=(parameter.source, parameter.key))
        if errors:
            return None
        values[parameter.name] = value
    return values


class DirectRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        try:
            self._dependencies, self._endpoint = _plan(self)
        except _NotDirect:
            return  # FastAPI serves it (self.app as APIRoute built it)
        self._declared = self.app
        self.app = self._serve

    @property
    def serves_directly(self) -> bool:
        return self.app == self._serve

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        arguments: list[dict[str, Any]] = []
        for call in (*self._dependencies, self._endpoint):
            values = _read(request, call.parameters) if call.parameters else {}
            if values is None:
                await self._declared(scope, receive, send)
                return
            if call.request_name is not None:
                values[call.request_name] = request
            arguments.append(values)
        endpoint_arguments = arguments[-1]
        for call, values in zip(self._dependencies, arguments, strict=False):
            result = await call.call(**values)
            for name in call.names:
                endpoint_arguments[name] = result
        response: Response = await self._endpoint.call(**endpoint_arguments)
        await response(scope, receive, send)
