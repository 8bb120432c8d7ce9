"""A plan on a map: its routes and visits as an RFC 7946 FeatureCollection.

Each route is a LineString from its vehicle type's depot through its visits to its end depot; each
visit is a Point. Positions are `[longitude, latitude]`, as RFC 7946 orders them. Only a request
whose places are WGS84 has a map: planar x/y places (benchmark instances) answer 406.

A function of JSON text alone (picklable in and out), so a large plan is drawn in a worker process
exactly as a small one is inline.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.core.errors import Conflict, NotAcceptable
from service.solving.plan_reading import PlanUnreadable, Route, read_plan
from service.solving.views import GEOJSON


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Location(_Lenient):
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None


class _Place(_Lenient):
    id: str
    location: _Location


class _End(_Lenient):
    location: _Location


class _Shipment(_Lenient):
    id: str
    pickup: _End
    delivery: _End


class _VehicleType(_Lenient):
    id: str
    depot: str
    end_depot: str | None = None


class _Places(_Lenient):
    depots: list[_Place]
    stops: list[_Place] = []
    shipments: list[_Shipment] | None = None
    vehicle_types: list[_VehicleType]


class _Map:
    """Positions by id, per kind of visit."""

    def __init__(self, places: _Places) -> None:
        self.depots = {depot.id: _position(depot.location) for depot in places.depots}
        self.stops = {stop.id: _position(stop.location) for stop in places.stops}
        self.pickups = {s.id: _position(s.pickup.location) for s in places.shipments or []}
        self.deliveries = {s.id: _position(s.delivery.location) for s in places.shipments or []}
        self.vehicle_types = {vehicle.id: vehicle for vehicle in places.vehicle_types}

    def visit(self, kind: str, visit_id: str) -> list[float]:
        found = {
            "stop": self.stops,
            "pickup": self.pickups,
            "delivery": self.deliveries,
            "reload": self.depots,
        }.get(kind, {})
        position = found.get(visit_id)
        if position is None:
            raise Conflict("The payload names a visit its request does not have.")
        return position

    def ends(self, route: Route) -> tuple[list[float], list[float]]:
        vehicle = self.vehicle_types.get(route.vehicle_type)
        if vehicle is None:
            raise Conflict("The payload names a vehicle type its request does not have.")
        start = self.depots.get(vehicle.depot)
        end = self.depots.get(vehicle.end_depot or vehicle.depot)
        if start is None or end is None:
            raise Conflict("A vehicle type of the request names a depot it does not have.")
        return start, end


class _Planar(Exception):
    pass


def _position(location: _Location) -> list[float]:
    if location.lat is None or location.lon is None:
        raise _Planar
    return [location.lon, location.lat]


def _places(document: bytes | None) -> _Map:
    if document is None:
        raise Conflict("The solution's scenario has no request to place its stops.")
    try:
        return _Map(_Places.model_validate(orjson.loads(document)))
    except _Planar:
        raise NotAcceptable(
            "The scenario's places are planar x/y coordinates, not WGS84: there is no map to draw."
        ) from None
    except (ValidationError, orjson.JSONDecodeError):
        raise Conflict("The scenario's request does not hold the places of a solvable request.") from None


def feature_collection(plan_document: bytes, places_document: bytes | None) -> dict[str, Any]:
    """The plan as a GeoJSON FeatureCollection (service.solving.views.FeatureCollection)."""
    places = _places(places_document)
    try:
        plan = read_plan(orjson.loads(plan_document))
    except (PlanUnreadable, orjson.JSONDecodeError) as exc:
        raise Conflict(f"The solution's payload is not a plan ({exc}).") from None
    lines: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    for index, route in enumerate(plan.routes):
        start, end = places.ends(route)
        positions = [places.visit(visit.kind, visit.id) for visit in route.visits]
        lines.append(
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [start, *positions, end]},
                "properties": {
                    "vehicle_type": route.vehicle_type,
                    "vehicle": route.vehicle,
                    "distance": route.distance,
                    "duration": route.duration,
                },
            }
        )
        points += [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": position},
                "properties": {"id": visit.id, "kind": visit.kind, "arrival": visit.arrival, "route": index},
            }
            for visit, position in zip(route.visits, positions, strict=True)
        ]
    return {"type": "FeatureCollection", "features": lines + points}


def _quality(media_range: str) -> tuple[str, float]:
    media_type, *parameters = (part.strip() for part in media_range.split(";"))
    quality = 1.0
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                quality = min(max(float(value), 0.0), 1.0)
            except ValueError:
                quality = 0.0
    return media_type.lower(), quality


def prefers_geojson(accept: str | None) -> bool:
    """Whether `Accept` names GeoJSON (q > 0) and ranks it above JSON named explicitly: a client that
    lists both at the same quality gets the default, JSON."""
    if not accept:
        return False
    qualities: dict[str, float] = {}
    for media_range in accept.split(","):
        media_type, quality = _quality(media_range)
        qualities[media_type] = max(quality, qualities.get(media_type, 0.0))
    geojson = qualities.get(GEOJSON, 0.0)
    return geojson > 0 and geojson > qualities.get("application/json", 0.0)
