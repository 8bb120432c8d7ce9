"""What the API returns as views of solutions: the comparison of two plans, and a plan as GeoJSON."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Number = int | float

Kpi = Annotated[
    tuple[Number | None, Number | None, Number | None],
    Field(
        description="`[a, b, b - a]`: the first solution's value, the second's, and the change; "
        "null where a payload does not hold the value (an older payload has no `cost`)."
    ),
]
Count = Annotated[
    tuple[int, int, int],
    Field(description="`[a, b, b - a]`: the first solution's, the second's, the change."),
]


class ComparisonKpis(BaseModel):
    distance: Kpi = Field(description="Metres, all routes together.")
    duration: Kpi = Field(description="Seconds, all routes' durations together.")
    cost: Kpi = Field(description="In the currency's smallest unit (fixed, distance and duration costs).")
    routes: Count = Field(description="Vehicles used.")
    unassigned: Count = Field(description="Stops (and shipments) on no route.")


class StopPlace(BaseModel):
    """Where a stop (or shipment) is served in one plan: which vehicle, and when in its route."""

    vehicle_type: str = Field(description="The vehicle type's id.")
    vehicle: int = Field(description="The vehicle, numbered from 0 within its type.")
    position: int = Field(
        description="A stop's index in the route's `stops`; a shipment's, its pickup's index in the "
        "route's `visits`; from 0."
    )


class StopMove(BaseModel):
    id: str = Field(description="The stop's id.")
    from_: StopPlace = Field(alias="from", description="Where the first solution serves it.")
    to: StopPlace = Field(description="Where the second solution serves it.")

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class StopChanges(BaseModel):
    moved: list[StopMove] = Field(
        description="Stops both plans serve, on another vehicle or at another position; in the second "
        "plan's route order."
    )
    added: list[str] = Field(description="Stops the second plan serves and the first does not.")
    dropped: list[str] = Field(description="Stops the first plan serves and the second does not.")
    unchanged: int = Field(description="Stops served by the same vehicle at the same position in both.")


class Comparison(BaseModel):
    """Two solutions' plans side by side: `a` is the first solution in the path, `b` the second."""

    kpis: ComparisonKpis
    stops: StopChanges
    shipments: StopChanges = Field(
        description="The same for shipments (pickup and delivery on one route), placed by their pickup."
    )


# -- GeoJSON (RFC 7946) ----------------------------------------------------------------------------

Position = Annotated[list[float], Field(min_length=2, max_length=2, description="`[longitude, latitude]`.")]


class LineString(BaseModel):
    type: Literal["LineString"]
    coordinates: Annotated[list[Position], Field(min_length=2)]


class Point(BaseModel):
    type: Literal["Point"]
    coordinates: Position


class RouteProperties(BaseModel):
    vehicle_type: str
    vehicle: int = Field(description="Numbered from 0 within its type.")
    distance: Number | None = Field(description="Metres.")
    duration: Number | None = Field(description="Seconds.")


class VisitProperties(BaseModel):
    id: str = Field(description="The stop's (or shipment's, or reload depot's) id.")
    kind: str = Field(description="`stop`, `pickup`, `delivery` or `reload`.")
    arrival: Number | None = Field(description="When service begins, seconds from the start of the day.")
    route: int = Field(description="The index of its route's feature (and of the route in the payload).")


class RouteFeature(BaseModel):
    type: Literal["Feature"]
    geometry: LineString
    properties: RouteProperties


class VisitFeature(BaseModel):
    type: Literal["Feature"]
    geometry: Point
    properties: VisitProperties


class FeatureCollection(BaseModel):
    """RFC 7946: the routes first (depot, visits, end depot), then one point per visit in route order."""

    type: Literal["FeatureCollection"]
    features: list[RouteFeature | VisitFeature]


GEOJSON = "application/geo+json"


def geojson_schema() -> dict[str, Any]:
    return FeatureCollection.model_json_schema(ref_template="#/components/schemas/{model}")
