"""A solution payload read as a plan: routes of stops on numbered vehicles, and its totals.

Payloads come in more than one shape: a solve's (routes with `vehicle`, `visits` and `cost`;
`unassigned` as objects with reasons), an older solve's (no `vehicle`, `visits` or `cost`;
`unassigned` as plain ids), and whatever a client recorded. Everything that compares or draws a
plan reads it through `read_plan`, which accepts all of them and refuses, with a short reason, a
payload that is no plan at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Number = int | float


class PlanUnreadable(Exception):
    """The payload is not a plan; the message says what is missing, never a value from it."""


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Visit(_Lenient):
    id: str
    kind: str = "stop"
    arrival: Number | None = None


class _Route(_Lenient):
    vehicle_type: str
    vehicle: Annotated[int, Field(ge=0)] | None = None
    stops: list[str] | None = None
    visits: list[_Visit] | None = None
    arrivals: list[Number | None] | None = None
    distance: Number | None = None
    duration: Number | None = None


class _Unassigned(_Lenient):
    id: str


class _Plan(_Lenient):
    routes: list[_Route]
    unassigned: list[str | _Unassigned] = []
    distance: Number | None = None
    duration: Number | None = None
    cost: Number | None = None


@dataclass(frozen=True, slots=True)
class Visit:
    id: str
    kind: str  # stop, pickup, delivery or reload (a reload's id is its depot's)
    arrival: Number | None


@dataclass(frozen=True, slots=True)
class Route:
    vehicle_type: str
    vehicle: int
    stops: list[str]
    visits: list[Visit]
    distance: Number | None
    duration: Number | None


@dataclass(frozen=True, slots=True)
class Plan:
    routes: list[Route]
    unassigned: list[str]
    distance: Number | None
    duration: Number | None
    cost: Number | None

    def placed_stops(self) -> Iterator[tuple[str, Route, int]]:
        """(stop id, its route, its position on it) for every stop served, in route order; a stop
        listed twice counts where it is first."""
        return _first_places((route, enumerate(route.stops)) for route in self.routes)

    def placed_shipments(self) -> Iterator[tuple[str, Route, int]]:
        """(shipment id, its route, the position of its pickup among the route's visits) for every
        shipment served, in route order."""
        return _first_places(
            (route, ((i, visit.id) for i, visit in enumerate(route.visits) if visit.kind == "pickup"))
            for route in self.routes
        )


def _first_places(
    routes: Iterable[tuple[Route, Iterable[tuple[int, str]]]],
) -> Iterator[tuple[str, Route, int]]:
    seen: set[str] = set()
    for route, items in routes:
        for position, item in items:
            if item not in seen:
                seen.add(item)
                yield item, route, position


def _visits(route: _Route) -> list[Visit]:
    if route.visits is not None:
        return [Visit(visit.id, visit.kind, visit.arrival) for visit in route.visits]
    stops = route.stops or []
    arrivals: list[Number | None] = list(route.arrivals or [])
    arrivals += [None] * (len(stops) - len(arrivals))
    return [Visit(stop, "stop", arrival) for stop, arrival in zip(stops, arrivals, strict=False)]


def _total(value: Number | None, parts: list[Number | None]) -> Number | None:
    """The payload's own total, else the routes' sum when every route has one."""
    if value is not None:
        return value
    if all(part is not None for part in parts):
        return sum(part for part in parts if part is not None)
    return None


def read_plan(payload: Any) -> Plan:
    """The plan in `payload` (a parsed JSON value); PlanUnreadable when it holds none."""
    try:
        plan = _Plan.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = "/".join(str(part) for part in first["loc"]) or "the payload"
        raise PlanUnreadable(f"{where}: {first['msg']}") from None
    routes: list[Route] = []
    # A payload without `vehicle` numbers a type's vehicles in the order its routes are listed.
    listed: dict[str, int] = {}
    for route in plan.routes:
        order = listed.get(route.vehicle_type, 0)
        listed[route.vehicle_type] = order + 1
        visits = _visits(route)
        stops = route.stops if route.stops is not None else [v.id for v in visits if v.kind == "stop"]
        vehicle = route.vehicle if route.vehicle is not None else order
        routes.append(Route(route.vehicle_type, vehicle, stops, visits, route.distance, route.duration))
    return Plan(
        routes=routes,
        unassigned=[item if isinstance(item, str) else item.id for item in plan.unassigned],
        distance=_total(plan.distance, [route.distance for route in routes]),
        duration=_total(plan.duration, [route.duration for route in routes]),
        cost=plan.cost,
    )
