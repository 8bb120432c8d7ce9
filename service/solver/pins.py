"""Pins of a re-solve: what they look like, and whether they fit the request they refer to.

A pin names one vehicle, `vehicle_type` + `vehicle` (numbered from 0 within its type), and either
one stop it must serve (`stop`), the visits its route must begin with (`prefix`), or the whole
route (`locked`). Checked here, before a solve is queued: ids and vehicles exist, no stop is
pinned twice, no vehicle carries two route pins, and every pinned route is feasible by itself —
capacity, time windows along it, its shift and depot hours, its type's max_distance and
max_duration. Plain Python and numpy, no PyVRP: the web process runs these checks. `pinning.py` then builds the pins into PyVRP's model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    TypeAdapter,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from service.solver.request import MAX_INT, Id, IntMatrix, RequestIssue, SolveRequest

# Far beyond any sum of bounded request values, far inside int64.
_UNBOUNDED = 2**62
MAX_PINS = 10_000


def _one_of_three(schema: dict[str, Any]) -> None:
    """Document what the model enforces: exactly one kind, and a member sent is never null."""
    schema["oneOf"] = [{"required": ["stop"]}, {"required": ["prefix"]}, {"required": ["locked"]}]
    for member in schema.get("properties", {}).values():
        alternatives = member.pop("anyOf", None)
        if alternatives:
            member.update(next(a for a in alternatives if a != {"type": "null"}))
        if member.get("default", 0) is None:
            del member["default"]


class Pin(BaseModel):
    """One vehicle's pin: exactly one of `stop`, `prefix` or `locked`."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_one_of_three)

    vehicle_type: Id = Field(description="The vehicle type's id in the request.")
    vehicle: Annotated[StrictInt, Field(ge=0, le=MAX_INT)] = Field(
        description="Which vehicle of that type, from 0 (as a payload route's `vehicle`)."
    )
    stop: Id | None = Field(default=None, description="A stop this vehicle serves (anywhere on its route).")
    prefix: Annotated[list[Id], Field(min_length=1, max_length=MAX_PINS)] | None = Field(
        default=None, description="The stops its route begins with, exactly and in this order."
    )
    locked: Annotated[list[Id], Field(min_length=1, max_length=MAX_PINS)] | None = Field(
        default=None, description="Its whole route: exactly these stops, in this order."
    )

    @model_serializer(mode="wrap")
    def _as_sent(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        # Without the kinds the pin is not: as the client wrote it. No return annotation, so that
        # the serialisation schema stays the model's own.
        return {name: value for name, value in handler(self).items() if value is not None}

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if any(getattr(self, name) is None for name in self.model_fields_set):
            raise PydanticCustomError("pin_null", "a member may be left out, never sent as null")
        if sum(value is not None for value in (self.stop, self.prefix, self.locked)) != 1:
            raise PydanticCustomError("pin_kind", "give exactly one of stop, prefix or locked")
        return self

    @property
    def route(self) -> list[str] | None:
        """The pinned visits of a prefix or locked pin."""
        return self.prefix if self.prefix is not None else self.locked

    @property
    def key(self) -> tuple[str, int]:
        return self.vehicle_type, self.vehicle


Pins = Annotated[list[Pin], Field(max_length=MAX_PINS)]
_PINS: TypeAdapter[list[Pin]] = TypeAdapter(Pins)


def parse_pins(value: Any) -> list[Pin]:
    """Pins as validated when the solve was queued (stored as JSON)."""
    return [] if value is None else _PINS.validate_python(value)


@dataclass(frozen=True, slots=True)
class RouteCheck:
    """A pinned route driven as early as its vehicle may leave: when it is ready to go on after its
    last visit (service done), and the first rule it breaks (None when it is feasible)."""

    ready: int
    depart: int
    broken: tuple[int | None, str, str] | None  # (visit index or None, type, message)


def drive(
    request: SolveRequest, distances: IntMatrix, durations: IntMatrix, vehicle_type: int, stops: list[int]
) -> RouteCheck:
    """Drive `stops` (request indices) in order on one vehicle of `vehicle_type`.

    Leaving as early as shift and depot allow is never worse for time windows (waiting is free),
    so one forward pass decides them. The vehicle must also be able to reach its end depot within
    shift and hours straight after the last visit: a prefix must leave room to return. Route
    limits: the visits and the way home must fit `max_distance`, and their driving and service
    alone (no waiting, which a later start could avoid) must fit `max_duration`.
    """
    vehicle = request.vehicle_types[vehicle_type]
    depots = {depot.id: i for i, depot in enumerate(request.depots)}
    start = depots[vehicle.depot]
    end = depots[vehicle.end_depot or vehicle.depot]
    shift_start, shift_end = vehicle.shift or (0, _UNBOUNDED)
    open_start, close_start = request.depots[start].time_window or (0, _UNBOUNDED)
    open_end, close_end = request.depots[end].time_window or (0, _UNBOUNDED)
    depart = max(shift_start, open_start)
    if depart > min(shift_end, close_start):
        return RouteCheck(
            depart, depart, (None, "pin_shift", "the vehicle cannot leave its depot in its shift")
        )
    load = [0] * request.load_dimensions
    for k, index in enumerate(stops):
        for d, amount in enumerate(request.stops[index].demand):
            load[d] += amount
        if any(amount > capacity for amount, capacity in zip(load, vehicle.capacity, strict=True)):
            return RouteCheck(
                depart, depart, (k, "pin_capacity", "the pinned visits exceed the vehicle's capacity")
            )
    first_stop = len(request.depots)
    time, here = depart, start
    metres, busy = 0, 0  # driven, and driving plus service
    for k, index in enumerate(stops):
        stop = request.stops[index]
        early, late = stop.time_window or (0, _UNBOUNDED)
        leg = int(durations[here, first_stop + index])
        time = max(time + leg, early)
        if time > late:
            message = "the pinned visits reach this stop after its time window closes"
            return RouteCheck(time, depart, (k, "pin_time_window", message))
        time += stop.service_duration
        metres += int(distances[here, first_stop + index])
        busy += leg + stop.service_duration
        here = first_stop + index
    metres += int(distances[here, end])
    busy += int(durations[here, end])
    if vehicle.max_distance is not None and metres > vehicle.max_distance:
        message = "the pinned visits and the way home are longer than the vehicle's max_distance"
        return RouteCheck(time, depart, (None, "pin_route_limit", message))
    if vehicle.max_duration is not None and busy > vehicle.max_duration:
        message = "the pinned visits and the way home take longer than the vehicle's max_duration"
        return RouteCheck(time, depart, (None, "pin_route_limit", message))
    home = max(time + int(durations[here, end]), open_end)
    if home > min(shift_end, close_end):
        message = "after the pinned visits the vehicle cannot be back within its shift and depot hours"
        return RouteCheck(time, depart, (None, "pin_shift", message))
    return RouteCheck(time, depart, None)


def pin_issues(
    request: SolveRequest,
    pins: list[Pin],
    matrices: Callable[[], tuple[IntMatrix, IntMatrix]],
    *,
    max_errors: int,
) -> list[RequestIssue]:
    """Why `pins` cannot hold in `request` (JSON pointers into the solve body: `/pins/2/stop`).

    `matrices` (distances, durations) is called only when a pinned route must be driven (it may
    build them).
    """
    issues: list[RequestIssue] = []
    for issue in _issues(request, pins, matrices):
        issues.append(issue)
        if len(issues) >= max_errors:
            break
    return issues


def _issue(pointer: str, kind: str, message: str) -> RequestIssue:
    return {"pointer": pointer, "msg": message, "type": kind}


def _issues(
    request: SolveRequest, pins: list[Pin], matrices: Callable[[], tuple[IntMatrix, IntMatrix]]
) -> Iterator[RequestIssue]:
    types = {vehicle.id: i for i, vehicle in enumerate(request.vehicle_types)}
    stops = {stop.id: i for i, stop in enumerate(request.stops)}
    pinned: set[str] = set()
    routes: dict[tuple[str, int], int] = {}
    locked: dict[tuple[str, int], set[str]] = {}
    to_drive: list[tuple[int, int, list[int], str]] = []
    for i, pin in enumerate(pins):
        at = f"/pins/{i}"
        if pin.vehicle_type not in types:
            yield _issue(
                f"{at}/vehicle_type", "unknown_vehicle_type", "must name a vehicle type of the request"
            )
            continue
        if pin.vehicle >= request.vehicle_types[types[pin.vehicle_type]].count:
            yield _issue(f"{at}/vehicle", "unknown_vehicle", "must be less than the vehicle type's count")
            continue
        named = [("stop", pin.stop)] if pin.stop is not None else []
        if (route := pin.route) is not None:
            field = "prefix" if pin.prefix is not None else "locked"
            named = [(f"{field}/{j}", stop) for j, stop in enumerate(route)]
            if pin.key in routes:
                message = "this vehicle already has a prefix or locked pin"
                yield _issue(at, "vehicle_pinned_twice", message)
                continue
            routes[pin.key] = i
        good = True
        for where, stop in named:
            if stop not in stops:
                yield _issue(f"{at}/{where}", "unknown_stop", "must name a stop of the request")
                good = False
            elif stop in pinned:
                yield _issue(f"{at}/{where}", "stop_pinned_twice", "this stop is already pinned")
                good = False
            pinned.add(stop)
        if not good:
            continue
        if pin.locked is not None:
            locked[pin.key] = set(pin.locked)
        indices = [stops[stop] for _, stop in named]
        field = "stop" if pin.stop is not None else "prefix" if pin.prefix is not None else "locked"
        to_drive.append((i, types[pin.vehicle_type], indices, field))
    for i, pin in enumerate(pins):
        if pin.stop is not None and pin.key in locked and pin.stop not in locked[pin.key]:
            message = "this vehicle's route is locked, and the stop is not on it"
            yield _issue(f"/pins/{i}/stop", "pin_conflict", message)
    if not to_drive:
        return
    distances, durations = matrices()
    for i, vehicle_type, indices, field in to_drive:
        broken = drive(request, distances, durations, vehicle_type, indices).broken
        if broken is not None:
            visit, kind, message = broken
            where = f"/pins/{i}/{field}" + ("" if visit is None or field == "stop" else f"/{visit}")
            yield _issue(where, kind, message)


@dataclass(frozen=True, slots=True)
class Replan:
    """What a re-solve adds to a solve: its pins, and the earlier solution's routes to start from."""

    pins: list[Pin]
    routes: list[dict[str, Any]] | None = None

    @classmethod
    def from_json(cls, pins: Any, routes: Any) -> Replan | None:
        """From the solution row's columns (None when the solve is a plain one)."""
        if pins is None and routes is None:
            return None
        return cls(parse_pins(pins), routes if isinstance(routes, list) else None)
