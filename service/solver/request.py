"""The solvable request and its validation into JSON-pointer errors.

Field-level rules are pydantic constraints; the rules that span fields (unique ids, depot
references, one location kind, one load dimension count) run once the fields are valid, so a
client sees the field errors first. No message repeats an input value: documents may be huge.

Refusing must not cost more than accepting: a client reads at most MAX_ERRORS errors, so no check
finds more. The matrices (4 million cells at 2,000 stops) are checked whole-array first (one pass
over the cell types, then numpy), and cells are visited one by one only to name the first
MAX_ERRORS bad ones; the lists of depots and vehicle types are bounded like the stops.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Literal, Self, TypedDict

import numpy as np
from numpy.typing import NDArray
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PlainSerializer,
    PlainValidator,
    Strict,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from service.solver.example import EXAMPLE_REQUEST, EXAMPLE_RICHER_REQUEST

# Every integer is bounded so that sums over a 2,000-stop route stay far inside int64 and below
# PyVRP's scaling limit (2**44), whatever the solver adds up or multiplies by its penalties.
MAX_INT = 2**31 - 1
MAX_COORDINATE = 1e9
# A broken 2,001² matrix could produce millions of errors; the first ones are what a client needs.
MAX_ERRORS = 50
# Load dimensions of a demand or a capacity (PyVRP takes any number; real fleets use a few).
MAX_LOAD_DIMENSIONS = 64
# Depots one vehicle type may reload at: a fleet reloads at a few; the bound keeps the list cheap.
MAX_RELOAD_DEPOTS = 64

Amount = Annotated[int, Strict(), Field(ge=0, le=MAX_INT)]
Latitude = Annotated[float, Strict(), Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Strict(), Field(ge=-180, le=180, allow_inf_nan=False)]
Coordinate = Annotated[float, Strict(), Field(ge=-MAX_COORDINATE, le=MAX_COORDINATE, allow_inf_nan=False)]
Id = Annotated[str, Strict(), Field(min_length=1)]
# Money in the currency's smallest unit. Bounded well below MAX_INT: the solver works in 1/18,000ths
# of a unit (see problem.py), and a route's cost must stay far inside int64 there.
MAX_COST = 10**7
Cost = Annotated[int, Strict(), Field(ge=0, le=MAX_COST)]
LocationKind = Literal["latlon", "xy"]
IntMatrix = NDArray[np.int64]


class RequestIssue(TypedDict):
    pointer: str
    msg: str
    type: str


class SolveRequestInvalid(Exception):
    """The document is not a solvable request; `errors` says where and why (JSON pointers)."""

    def __init__(self, errors: list[RequestIssue]) -> None:
        super().__init__(f"{len(errors)} validation error(s)")
        self.errors = errors


def _issue(loc: tuple[int | str, ...], error_type: str, message: str) -> InitErrorDetails:
    return {"type": PydanticCustomError(error_type, message), "loc": loc, "input": None}


def _raise_issues(title: str, issues: list[InitErrorDetails]) -> None:
    if issues:
        raise ValidationError.from_exception_data(title, issues[:MAX_ERRORS])


def _ordered_window(window: tuple[int, int]) -> tuple[int, int]:
    if window[0] > window[1]:
        raise PydanticCustomError("time_window_order", "earliest must not be after latest")
    return window


def _one_dimension(value: object) -> object:
    # `type(...) is int` rather than isinstance: a bool is an int to Python but not to a client.
    if type(value) is int:
        return [value]
    if not isinstance(value, list):
        raise PydanticCustomError("load_type", "must be an integer or a list of integers")
    return value


TimeWindow = Annotated[tuple[Amount, Amount], AfterValidator(_ordered_window)]
Load = Annotated[
    list[Amount],
    Field(min_length=1, max_length=MAX_LOAD_DIMENSIONS),
    BeforeValidator(_one_dimension, json_schema_input_type=Amount | list[Amount]),
]


def _first(issues: Iterator[InitErrorDetails]) -> list[InitErrorDetails]:
    return list(itertools.islice(issues, MAX_ERRORS))


_FIRST_CHUNK = 16


def _items_until_max_errors(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Validate a list's items in growing chunks, and stop once MAX_ERRORS errors are found.

    pydantic finds every error of a list before it reports any: 2,000 stops with a few bad members
    each were tens of thousands of error objects, most of them thrown away. A valid list costs a
    handful of extra calls (chunks of 16, 32, 64, ... items).
    """
    if not isinstance(value, list) or len(value) <= _FIRST_CHUNK:
        return handler(value)
    items: list[Any] = []
    issues: list[InitErrorDetails] = []
    start, size = 0, _FIRST_CHUNK
    while start < len(value) and len(issues) < MAX_ERRORS:
        try:
            items += handler(value[start : start + size])
        except ValidationError as exc:
            for error in exc.errors(include_url=False, include_input=False):
                index, *rest = error["loc"] or (0,)
                loc = (index + start if isinstance(index, int) else index, *rest)
                issues.append(_issue(loc, error["type"], error["msg"]))
        start, size = start + size, size * 2
    _raise_issues("list", issues)
    return items


def _out_of_range(cell: int) -> InitErrorDetails | None:
    if 0 <= cell <= MAX_INT:
        return None
    return {
        "type": PydanticCustomError(
            "greater_than_equal" if cell < 0 else "less_than_equal", f"must be in 0..{MAX_INT}"
        ),
        "loc": (),
        "input": None,
    }


def _matrix(value: object) -> IntMatrix:
    """A square matrix of bounded non-negative ints with a zero diagonal, as int64.

    Checked with numpy rather than per element by pydantic: a 2,001² matrix is 4 million values,
    and this takes two thirds of the time and none of pydantic's extra Python lists. A bad matrix
    is found by the same whole-matrix passes; only its first MAX_ERRORS bad cells are looked for.
    """
    if not isinstance(value, list):
        raise PydanticCustomError("list_type", "must be a list of rows")
    size = len(value)
    _raise_issues(
        "Matrix",
        _first(
            _issue((i,), "matrix_size", "must be a list with one entry per depot and stop")
            for i, row in enumerate(value)
            if not isinstance(row, list) or len(row) != size
        ),
    )
    # One pass over every cell's type at C speed; a bool is an int to Python, not to a client.
    if set(map(type, itertools.chain.from_iterable(value))) - {int}:
        _raise_issues(
            "Matrix",
            _first(
                _issue((i, j), "int_type", "must be an integer")
                for i, row in enumerate(value)
                for j, cell in enumerate(row)
                if type(cell) is not int
            ),
        )
    try:
        matrix = np.array(value, dtype=np.int64).reshape(size, size)
    except OverflowError:  # beyond int64: name the first cells out of range, in order
        _raise_issues(
            "Matrix",
            _first(
                {**issue, "loc": (i, j)}
                for i, row in enumerate(value)
                for j, cell in enumerate(row)
                if (issue := _out_of_range(cell)) is not None
            ),
        )
        raise AssertionError("unreachable: a cell is out of range") from None
    if size and (matrix.min() < 0 or matrix.max() > MAX_INT):
        # Row by row, so that nothing the size of the matrix is made again, and only the first bad
        # cells' indices ever are.
        rows = np.flatnonzero((matrix.min(axis=1) < 0) | (matrix.max(axis=1) > MAX_INT))
        cells = (
            (int(i), int(j)) for i in rows for j in np.flatnonzero((matrix[i] < 0) | (matrix[i] > MAX_INT))
        )
        _raise_issues(
            "Matrix",
            _first(
                {**issue, "loc": (i, j)}
                for i, j in cells
                if (issue := _out_of_range(int(matrix[i, j]))) is not None
            ),
        )
    diagonal = np.flatnonzero(np.diagonal(matrix))[:MAX_ERRORS].tolist()
    _raise_issues(
        "Matrix", [_issue((i, i), "matrix_diagonal", "must be 0 (a place to itself)") for i in diagonal]
    )
    return matrix


_MATRIX_SCHEMA = {
    "type": "array",
    "items": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": MAX_INT}},
    "description": "Square, one row and column per depot, then per stop, then per shipment pickup and "
    "delivery, in request order; zero diagonal.",
}
Matrix = Annotated[
    IntMatrix,
    PlainValidator(_matrix),
    PlainSerializer(lambda matrix: matrix.tolist()),
    WithJsonSchema(_MATRIX_SCHEMA),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Location(_Strict):
    """WGS84 `lat`/`lon`, or planar `x`/`y` (benchmark instances); one kind per request."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["lat", "lon"]}, {"required": ["x", "y"]}]}
    )

    lat: Latitude | None = Field(default=None, description="WGS84 degrees.")
    lon: Longitude | None = Field(default=None, description="WGS84 degrees.")
    x: Coordinate | None = Field(default=None, description="Planar, in metres (benchmark instances).")
    y: Coordinate | None = Field(default=None, description="Planar, in metres.")

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        geographic = (self.lat is not None, self.lon is not None)
        planar = (self.x is not None, self.y is not None)
        if not ((all(geographic) and not any(planar)) or (all(planar) and not any(geographic))):
            raise PydanticCustomError("location_kind", "give either lat and lon, or x and y")
        return self

    @property
    def kind(self) -> LocationKind:
        return "latlon" if self.lat is not None else "xy"


_WINDOW = "`[earliest, latest]`, seconds from the start of the planning day, earliest <= latest"
_ID = "Unique across depots, stops and vehicle types."


class Depot(_Strict):
    id: Id = Field(description=_ID)
    location: Location
    time_window: TimeWindow | None = Field(default=None, description=f"When it is open: {_WINDOW}.")


class Stop(_Strict):
    id: Id = Field(description=_ID)
    location: Location
    demand: Load = Field(
        description="What is delivered: an integer, or a list of integers for several load dimensions "
        "(as many as every vehicle type's `capacity`)."
    )
    service_duration: Amount = Field(default=0, description="Seconds spent at the stop.")
    time_window: TimeWindow | None = Field(default=None, description=f"When service may begin: {_WINDOW}.")
    required: Annotated[bool, Strict()] = Field(
        default=True, description="An optional stop (false) is served only when worth its detour."
    )
    prize: Amount = Field(default=0, description="Collected when an optional stop is served.")


class ShipmentStep(_Strict):
    location: Location
    service_duration: Amount = Field(default=0, description="Seconds spent loading or unloading.")
    time_window: TimeWindow | None = Field(default=None, description=f"When service may begin: {_WINDOW}.")


class Shipment(_Strict):
    """Goods carried from `pickup` to `delivery` by one vehicle, pickup first; on board in between."""

    id: Id = Field(description=_ID)
    amount: Load = Field(description="What is carried: like `demand`, per load dimension.")
    pickup: ShipmentStep
    delivery: ShipmentStep


class VehicleType(_Strict):
    id: Id = Field(description=_ID)
    count: Annotated[int, Strict(), Field(ge=1, le=MAX_INT)] = Field(description="Vehicles of this type.")
    capacity: Load = Field(description="What one vehicle carries: like `demand`, per load dimension.")
    depot: Id = Field(description="The id of the depot its routes start at.")
    end_depot: Id | None = Field(default=None, description="Where routes end; default `depot`.")
    shift: TimeWindow | None = Field(default=None, description=f"When it may be on the road: {_WINDOW}.")
    max_distance: Amount | None = Field(default=None, description="Metres one route may drive at most.")
    max_duration: Amount | None = Field(
        default=None, description="Seconds one route may last at most (from leaving the depot to the end)."
    )
    fixed_cost: Cost = Field(default=0, description="Cost of using one vehicle (smallest currency unit).")
    cost_per_km: Cost = Field(default=0, description="Cost per 1,000 m driven.")
    cost_per_hour: Cost = Field(default=0, description="Cost per 3,600 s of route duration.")
    reload_depots: Annotated[list[Id], Field(max_length=MAX_RELOAD_DEPOTS)] | None = Field(
        default=None,
        description="Depot ids where a vehicle may unload and reload during its route (several trips).",
    )
    max_reloads: Annotated[int, Strict(), Field(ge=0, le=MAX_INT)] | None = Field(
        default=None, description="Reloads one route may make at most; needs `reload_depots`."
    )


class MatrixInput(_Strict):
    """Travel between every pair of places, rows and columns in request order: depots, stops, then
    each shipment's pickup and delivery."""

    distances: Matrix = Field(description="Metres.")
    durations: Matrix | None = Field(default=None, description="Seconds; default: the distances.")


class RequestOptions(_Strict):
    speed_kmh: Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)] = Field(
        default=40.0, description="Without a matrix, lat/lon durations are great-circle metres at this speed."
    )
    objective: Literal["distance", "cost"] = Field(
        default="distance",
        description="`distance`: the least total distance. `cost`: the least fixed, distance and duration "
        "costs of the vehicle types, minus the prizes of the optional stops served.",
    )


class SolveRequest(_Strict):
    """A routing problem the solver takes: depots, stops to visit, vehicle types, and optionally the
    travel matrix. Distances are metres; times and durations seconds from the start of the planning
    day; all integers >= 0. Without a matrix, lat/lon places are great-circle metres apart (durations
    at `options.speed_kmh`) and x/y places Euclidean (rounded; duration = distance). Objective
    (`options.objective`): the least total distance, or the least cost; every required stop and
    shipment is served once unless it cannot be feasibly served."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_REQUEST, EXAMPLE_RICHER_REQUEST]})

    depots: Annotated[list[Depot], Field(min_length=1), WrapValidator(_items_until_max_errors)]
    stops: Annotated[list[Stop], Field(min_length=1), WrapValidator(_items_until_max_errors)]
    vehicle_types: Annotated[list[VehicleType], Field(min_length=1), WrapValidator(_items_until_max_errors)]
    shipments: Annotated[list[Shipment], WrapValidator(_items_until_max_errors)] = Field(
        default_factory=list,
        description="Pickup-and-delivery pairs, each served by one vehicle (pickup first).",
    )
    matrix: MatrixInput | None = None
    options: RequestOptions = RequestOptions()

    @model_validator(mode="wrap")
    @classmethod
    def _matrix_size(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        # A matrix of the wrong size is refused without converting its (maybe millions of) cells:
        # it is swapped for a 1 × 1 stand-in, and the other fields are still validated.
        wrong = _wrong_matrix_sizes(data)
        if not wrong:
            return handler(data)
        message = "must have one row per depot, stop, shipment pickup and shipment delivery"
        issues = [_issue(("matrix", name), "matrix_size", message) for name in wrong]
        try:
            handler({**data, "matrix": {**data["matrix"], **{name: [[0]] for name in wrong}}})
        except ValidationError as exc:
            issues += [
                _issue(error["loc"], error["type"], error["msg"])
                for error in exc.errors(include_url=False, include_input=False)
            ]
        _raise_issues("SolveRequest", issues)
        raise AssertionError("unreachable: issues is not empty")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _raise_issues(
            "SolveRequest",
            _first(
                itertools.chain(
                    self._id_issues(),
                    self._location_issues(),
                    self._dimension_issues(),
                    self._vehicle_issues(),
                    self._stop_issues(),
                )
            ),
        )
        return self

    def _id_issues(self) -> list[InitErrorDetails]:
        issues: list[InitErrorDetails] = []
        seen: set[str] = set()
        identified: list[tuple[str, Sequence[Depot | Stop | VehicleType | Shipment]]] = [
            ("depots", self.depots),
            ("stops", self.stops),
            ("vehicle_types", self.vehicle_types),
            ("shipments", self.shipments),
        ]
        for collection, items in identified:
            for i, item in enumerate(items):
                if item.id in seen:
                    issues.append(_issue((collection, i, "id"), "duplicate_id", "ids must be unique"))
                seen.add(item.id)
        depot_ids = {depot.id for depot in self.depots}
        for i, vehicle in enumerate(self.vehicle_types):
            for field, ref in (("depot", vehicle.depot), ("end_depot", vehicle.end_depot)):
                if ref is not None and ref not in depot_ids:
                    issues.append(_issue(("vehicle_types", i, field), "unknown_depot", "must name a depot"))
            for j, ref in enumerate(vehicle.reload_depots or ()):
                if ref not in depot_ids:
                    issues.append(
                        _issue(("vehicle_types", i, "reload_depots", j), "unknown_depot", "must name a depot")
                    )
        return issues

    def _location_issues(self) -> list[InitErrorDetails]:
        kind = self.location_kind
        places: list[tuple[str, Sequence[Depot | Stop]]] = [("depots", self.depots), ("stops", self.stops)]
        for collection, items in places:
            for i, item in enumerate(items):
                if item.location.kind != kind:
                    message = "every location must be of the first depot's kind (lat/lon or x/y)"
                    return [_issue((collection, i, "location"), "location_kind_mixed", message)]
        for i, shipment in enumerate(self.shipments):
            for step in ("pickup", "delivery"):
                if getattr(shipment, step).location.kind != kind:
                    message = "every location must be of the first depot's kind (lat/lon or x/y)"
                    return [_issue(("shipments", i, step, "location"), "location_kind_mixed", message)]
        return []

    def _dimension_issues(self) -> list[InitErrorDetails]:
        dimensions = self.load_dimensions
        message = "must have as many load dimensions as the first vehicle type's capacity"
        loads = [(("vehicle_types", i, "capacity"), v.capacity) for i, v in enumerate(self.vehicle_types)]
        loads += [(("stops", i, "demand"), stop.demand) for i, stop in enumerate(self.stops)]
        loads += [(("shipments", i, "amount"), item.amount) for i, item in enumerate(self.shipments)]
        return [_issue(loc, "load_dimensions", message) for loc, load in loads if len(load) != dimensions]

    def _vehicle_issues(self) -> Iterator[InitErrorDetails]:
        for i, vehicle in enumerate(self.vehicle_types):
            if vehicle.max_reloads is not None and not vehicle.reload_depots:
                message = "a limit on reloads needs reload_depots"
                yield _issue(
                    ("vehicle_types", i, "max_reloads"), "max_reloads_without_reload_depots", message
                )

    def _stop_issues(self) -> Iterator[InitErrorDetails]:
        for i, stop in enumerate(self.stops):
            # A required stop is served whatever its prize; a prize there is a client's mistake.
            if stop.required and "prize" in stop.model_fields_set:
                message = "only an optional stop (required: false) has a prize"
                yield _issue(("stops", i, "prize"), "prize_without_optional", message)
            elif self.options.objective == "cost" and stop.prize > MAX_COST:
                # A prize is money then, and counted in the solver's finer unit (see problem.py).
                message = f"with objective cost, a prize is money: at most {MAX_COST}"
                yield _issue(("stops", i, "prize"), "less_than_equal", message)

    @property
    def locations(self) -> list[Location]:
        """Every place's location in matrix order: depots, stops, then each shipment's pickup and
        delivery."""
        places = [depot.location for depot in self.depots] + [stop.location for stop in self.stops]
        for shipment in self.shipments:
            places += [shipment.pickup.location, shipment.delivery.location]
        return places

    @property
    def location_kind(self) -> LocationKind:
        return self.depots[0].location.kind

    @property
    def load_dimensions(self) -> int:
        return len(self.vehicle_types[0].capacity)


def _wrong_matrix_sizes(data: Any) -> list[str]:
    if not isinstance(data, dict) or not isinstance(matrix := data.get("matrix"), dict):
        return []
    depots, stops, shipments = data.get("depots"), data.get("stops"), data.get("shipments", [])
    if not isinstance(depots, list) or not isinstance(stops, list) or not isinstance(shipments, list):
        return []
    size = len(depots) + len(stops) + 2 * len(shipments)
    return [
        name
        for name in ("distances", "durations")
        if isinstance(rows := matrix.get(name), list) and len(rows) != size
    ]


# pydantic's wording where it would puzzle a client of this API.
_MESSAGES = {"extra_forbidden": "unknown field: not part of a solvable request"}


def _pointer(loc: tuple[int | str, ...]) -> str:
    # RFC 6901: "~" and "/" inside a member name are escaped, in that order.
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in loc)


def parse_solve_request(document: object, *, max_stops: int) -> SolveRequest:
    """Validate `document` as a solvable request, or raise `SolveRequestInvalid` (≤ MAX_ERRORS).

    `max_stops` bounds the depots, the vehicle types and the shipments too: each depot is a row and
    a column of the matrices, and each list's items are errors waiting to be found.
    """
    if isinstance(document, dict):
        for member in ("stops", "depots", "vehicle_types", "shipments"):
            items = document.get(member)
            if isinstance(items, list) and len(items) > max_stops:
                # Refused before anything else: validating an oversized request is the expensive part.
                name = member.replace("_", " ")
                message = f"at most {max_stops} {name} can be solved"
                raise SolveRequestInvalid(
                    [{"pointer": f"/{member}", "msg": message, "type": f"too_many_{member}"}]
                )
        stops, shipments = document.get("stops"), document.get("shipments")
        if (
            isinstance(stops, list)
            and isinstance(shipments, list)
            and len(stops) + 2 * len(shipments) > max_stops
        ):
            # Each shipment is two places, and the places bound the matrices.
            message = f"at most {max_stops} places (stops, and two per shipment) can be solved"
            raise SolveRequestInvalid([{"pointer": "/shipments", "msg": message, "type": "too_many_places"}])
    try:
        return SolveRequest.model_validate(document)
    except ValidationError as exc:
        errors: list[RequestIssue] = [
            {
                "pointer": _pointer(error["loc"]),
                "msg": _MESSAGES.get(error["type"], error["msg"]),
                "type": error["type"],
            }
            for error in exc.errors(include_url=False, include_input=False)[:MAX_ERRORS]
        ]
        raise SolveRequestInvalid(errors) from None
