"""Validation of the solvable request: one case per rule, each asserting the pointer and the type."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from service.solver.example import EXAMPLE_RICHER_REQUEST
from service.solver.request import (
    EXAMPLE_REQUEST,
    MAX_COST,
    MAX_ERRORS,
    MAX_INT,
    SolveRequest,
    SolveRequestInvalid,
    parse_solve_request,
)

Document = dict[str, Any]


def _planar() -> Document:
    """Two depots, three stops, x/y, with an explicit 5 × 5 matrix."""
    size = 5
    return {
        "depots": [
            {"id": "d1", "location": {"x": 0, "y": 0}, "time_window": [0, 1000]},
            {"id": "d2", "location": {"x": 10, "y": 0}},
        ],
        "stops": [
            {"id": "s1", "location": {"x": 1, "y": 1}, "demand": 1, "time_window": [0, 100]},
            {"id": "s2", "location": {"x": 2, "y": 2}, "demand": 2, "service_duration": 5},
            {"id": "s3", "location": {"x": 3, "y": 3}, "demand": 3, "required": False, "prize": 7},
        ],
        "vehicle_types": [
            {"id": "v1", "count": 1, "capacity": 10, "depot": "d1"},
            {"id": "v2", "count": 2, "capacity": 5, "depot": "d1", "end_depot": "d2", "shift": [0, 500]},
        ],
        "matrix": {"distances": [[0 if i == j else 1 for j in range(size)] for i in range(size)]},
        "options": {"speed_kmh": 30},
    }


def _errors(document: object, *, max_stops: int = 100) -> list[dict[str, str]]:
    with pytest.raises(SolveRequestInvalid) as caught:
        parse_solve_request(document, max_stops=max_stops)
    return [dict(error) for error in caught.value.errors]


def _set(path: str, value: object) -> Callable[[Document], None]:
    def mutate(document: Document) -> None:
        *parents, last = [int(part) if part.isdigit() else part for part in path.strip("/").split("/")]
        target: Any = document
        for part in parents:
            target = target[part]
        target[last] = value

    return mutate


def _delete(path: str) -> Callable[[Document], None]:
    def mutate(document: Document) -> None:
        *parents, last = [int(part) if part.isdigit() else part for part in path.strip("/").split("/")]
        target: Any = document
        for part in parents:
            target = target[part]
        del target[last]

    return mutate


RULES: list[tuple[str, Callable[[Document], None], str, str]] = [
    ("not an object", lambda d: d.clear(), "/depots", "missing"),
    ("unknown top-level field", _set("/vehicles", []), "/vehicles", "extra_forbidden"),
    ("unknown nested field", _set("/stops/1/colour", "red"), "/stops/1/colour", "extra_forbidden"),
    ("no depot", _set("/depots", []), "/depots", "too_short"),
    ("no stop", _set("/stops", []), "/stops", "too_short"),
    ("no vehicle type", _set("/vehicle_types", []), "/vehicle_types", "too_short"),
    ("negative demand", _set("/stops/2/demand", -1), "/stops/2/demand/0", "greater_than_equal"),
    (
        "demand beyond the bound",
        _set("/stops/2/demand", [MAX_INT + 1]),
        "/stops/2/demand/0",
        "less_than_equal",
    ),
    ("fractional demand", _set("/stops/0/demand", 1.5), "/stops/0/demand", "load_type"),
    (
        "string service duration",
        _set("/stops/1/service_duration", "5"),
        "/stops/1/service_duration",
        "int_type",
    ),
    (
        "boolean capacity",
        _set("/vehicle_types/0/capacity", [True]),
        "/vehicle_types/0/capacity/0",
        "int_type",
    ),
    ("empty load", _set("/stops/0/demand", []), "/stops/0/demand", "too_short"),
    ("missing demand", _delete("/stops/0/demand"), "/stops/0/demand", "missing"),
    (
        "inverted time window",
        _set("/stops/0/time_window", [50, 40]),
        "/stops/0/time_window",
        "time_window_order",
    ),
    ("three-part time window", _set("/depots/0/time_window", [0, 1, 2]), "/depots/0/time_window", "too_long"),
    ("inverted shift", _set("/vehicle_types/1/shift", [9, 8]), "/vehicle_types/1/shift", "time_window_order"),
    ("zero vehicles", _set("/vehicle_types/0/count", 0), "/vehicle_types/0/count", "greater_than_equal"),
    ("unknown depot", _set("/vehicle_types/1/depot", "d9"), "/vehicle_types/1/depot", "unknown_depot"),
    (
        "stop as end depot",
        _set("/vehicle_types/1/end_depot", "s1"),
        "/vehicle_types/1/end_depot",
        "unknown_depot",
    ),
    ("duplicate stop id", _set("/stops/2/id", "s1"), "/stops/2/id", "duplicate_id"),
    ("id shared across kinds", _set("/vehicle_types/0/id", "d2"), "/vehicle_types/0/id", "duplicate_id"),
    ("empty id", _set("/stops/0/id", ""), "/stops/0/id", "string_too_short"),
    (
        "latitude out of range",
        _set("/depots/0/location", {"lat": 91, "lon": 0}),
        "/depots/0/location/lat",
        "less_than_equal",
    ),
    (
        "longitude out of range",
        _set("/depots/0/location", {"lat": 0, "lon": -181}),
        "/depots/0/location/lon",
        "greater_than_equal",
    ),
    ("half a location", _set("/stops/1/location", {"x": 1}), "/stops/1/location", "location_kind"),
    (
        "two kinds in one location",
        _set("/stops/1/location", {"x": 1, "y": 2, "lat": 3}),
        "/stops/1/location",
        "location_kind",
    ),
    (
        "mixed location kinds",
        _set("/stops/1/location", {"lat": 52.5, "lon": 13.4}),
        "/stops/1/location",
        "location_kind_mixed",
    ),
    (
        "non-finite coordinate",
        _set("/stops/1/location", {"x": float("inf"), "y": 0}),
        "/stops/1/location/x",
        "finite_number",
    ),
    ("demand dimensions", _set("/stops/1/demand", [1, 2]), "/stops/1/demand", "load_dimensions"),
    (
        "capacity dimensions",
        _set("/vehicle_types/1/capacity", [1, 2]),
        "/vehicle_types/1/capacity",
        "load_dimensions",
    ),
    ("matrix with too few rows", _set("/matrix/distances", [[0]]), "/matrix/distances", "matrix_size"),
    (
        "durations of another size",
        _set("/matrix/durations", [[0, 1], [1, 0]]),
        "/matrix/durations",
        "matrix_size",
    ),
    ("short matrix row", _set("/matrix/distances/3", [1, 0, 1]), "/matrix/distances/3", "matrix_size"),
    ("matrix row not a list", _set("/matrix/distances/2", 7), "/matrix/distances/2", "matrix_size"),
    ("fractional matrix cell", _set("/matrix/distances/1/4", 0.5), "/matrix/distances/1/4", "int_type"),
    (
        "negative matrix cell",
        _set("/matrix/distances/4/0", -3),
        "/matrix/distances/4/0",
        "greater_than_equal",
    ),
    (
        "matrix cell beyond int64",
        _set("/matrix/distances/0/1", 2**70),
        "/matrix/distances/0/1",
        "less_than_equal",
    ),
    ("nonzero matrix diagonal", _set("/matrix/distances/2/2", 4), "/matrix/distances/2/2", "matrix_diagonal"),
    ("missing distances", _set("/matrix", {"durations": [[0]]}), "/matrix/distances", "missing"),
    ("zero speed", _set("/options/speed_kmh", 0), "/options/speed_kmh", "greater_than"),
    ("optional flag not a boolean", _set("/stops/2/required", "no"), "/stops/2/required", "bool_type"),
    ("negative prize", _set("/stops/2/prize", -1), "/stops/2/prize", "greater_than_equal"),
    ("prize on a required stop", _set("/stops/1/prize", 5), "/stops/1/prize", "prize_without_optional"),
    (
        "prize beyond money under the cost objective",
        lambda d: (_set("/options/objective", "cost")(d), _set("/stops/2/prize", MAX_COST + 1)(d)),
        "/stops/2/prize",
        "less_than_equal",
    ),
    ("unknown objective", _set("/options/objective", "time"), "/options/objective", "literal_error"),
    (
        "negative max distance",
        _set("/vehicle_types/0/max_distance", -1),
        "/vehicle_types/0/max_distance",
        "greater_than_equal",
    ),
    (
        "fractional max duration",
        _set("/vehicle_types/0/max_duration", 1.5),
        "/vehicle_types/0/max_duration",
        "int_type",
    ),
    (
        "negative fixed cost",
        _set("/vehicle_types/1/fixed_cost", -5),
        "/vehicle_types/1/fixed_cost",
        "greater_than_equal",
    ),
    (
        "cost per km beyond the bound",
        _set("/vehicle_types/0/cost_per_km", MAX_COST + 1),
        "/vehicle_types/0/cost_per_km",
        "less_than_equal",
    ),
    (
        "cost per hour as a string",
        _set("/vehicle_types/0/cost_per_hour", "10"),
        "/vehicle_types/0/cost_per_hour",
        "int_type",
    ),
    (
        "unknown reload depot",
        _set("/vehicle_types/1/reload_depots", ["d1", "s2"]),
        "/vehicle_types/1/reload_depots/1",
        "unknown_depot",
    ),
    (
        "max reloads without reload depots",
        _set("/vehicle_types/0/max_reloads", 2),
        "/vehicle_types/0/max_reloads",
        "max_reloads_without_reload_depots",
    ),
    (
        "negative max reloads",
        lambda d: (
            _set("/vehicle_types/0/reload_depots", ["d1"])(d),
            _set("/vehicle_types/0/max_reloads", -1)(d),
        ),
        "/vehicle_types/0/max_reloads",
        "greater_than_equal",
    ),
    ("shipment without amount", _delete("/shipments/0/amount"), "/shipments/0/amount", "missing"),
    (
        "shipment amount dimensions",
        _set("/shipments/0/amount", [1, 1]),
        "/shipments/0/amount",
        "load_dimensions",
    ),
    (
        "negative shipment amount",
        _set("/shipments/0/amount", -2),
        "/shipments/0/amount/0",
        "greater_than_equal",
    ),
    ("shipment without delivery", _delete("/shipments/0/delivery"), "/shipments/0/delivery", "missing"),
    (
        "inverted pickup window",
        _set("/shipments/0/pickup/time_window", [9, 1]),
        "/shipments/0/pickup/time_window",
        "time_window_order",
    ),
    (
        "negative delivery service",
        _set("/shipments/0/delivery/service_duration", -1),
        "/shipments/0/delivery/service_duration",
        "greater_than_equal",
    ),
    (
        "shipment location of another kind",
        _set("/shipments/0/delivery/location", {"lat": 52.5, "lon": 13.4}),
        "/shipments/0/delivery/location",
        "location_kind_mixed",
    ),
    ("shipment id shared with a stop", _set("/shipments/0/id", "s1"), "/shipments/0/id", "duplicate_id"),
    (
        "matrix without the shipment's places",
        _set("/matrix/distances", [[0 if i == j else 1 for j in range(5)] for i in range(5)]),
        "/matrix/distances",
        "matrix_size",
    ),
]


def _with_shipment(document: Document) -> Document:
    document["shipments"] = [
        {"id": "p1", "amount": 2, "pickup": {"location": {"x": 4, "y": 4}},
         "delivery": {"location": {"x": 5, "y": 5}, "time_window": [0, 900], "service_duration": 30}},
    ]  # fmt: skip
    document["matrix"] = {"distances": [[0 if i == j else 1 for j in range(7)] for i in range(7)]}
    return document


@pytest.mark.parametrize(
    ("mutate", "pointer", "error_type"), [rule[1:] for rule in RULES], ids=[rule[0] for rule in RULES]
)
def test_a_broken_rule_is_reported_at_its_pointer(
    mutate: Callable[[Document], None], pointer: str, error_type: str
) -> None:
    document = _with_shipment(_planar())
    mutate(document)
    errors = _errors(document)
    assert {"pointer": pointer, "type": error_type} in [
        {"pointer": e["pointer"], "type": e["type"]} for e in errors
    ], errors


def test_the_valid_base_document_passes() -> None:
    request = parse_solve_request(_planar(), max_stops=3)
    assert [stop.demand for stop in request.stops] == [[1], [2], [3]]
    assert request.matrix is not None and request.matrix.distances.shape == (5, 5)
    assert request.stops[2].required is False and request.stops[2].prize == 7


def test_the_new_fields_are_optional_and_parsed() -> None:
    document = _with_shipment(_planar())
    document["vehicle_types"][0].update(
        max_distance=1000, max_duration=3600, fixed_cost=5000, cost_per_km=40, cost_per_hour=2500,
        reload_depots=["d2"], max_reloads=2,
    )  # fmt: skip
    document["options"]["objective"] = "cost"
    request = parse_solve_request(document, max_stops=10)
    assert request.shipments[0].amount == [2] and request.shipments[0].delivery.service_duration == 30
    assert request.vehicle_types[0].reload_depots == ["d2"] and request.vehicle_types[1].max_reloads is None
    assert len(request.locations) == 7
    plain = parse_solve_request(_planar(), max_stops=10)
    assert plain.shipments == [] and plain.options.objective == "distance"


def test_shipments_count_twice_towards_the_places_bound() -> None:
    document = _with_shipment(_planar())
    assert _errors(document, max_stops=4) == [
        {
            "pointer": "/shipments",
            "msg": "at most 4 places (stops, and two per shipment) can be solved",
            "type": "too_many_places",
        }
    ]


def test_a_document_that_is_not_an_object_is_refused_at_the_root() -> None:
    assert _errors([1, 2]) == [
        {
            "pointer": "",
            "msg": "Input should be a valid dictionary or instance of SolveRequest",
            "type": "model_type",
        }
    ]


def test_too_many_stops_is_refused_before_anything_else() -> None:
    document = _planar()
    document["stops"][0]["demand"] = -5  # not reported: the size alone decides
    assert _errors(document, max_stops=2) == [
        {"pointer": "/stops", "msg": "at most 2 stops can be solved", "type": "too_many_stops"}
    ]


def test_only_the_first_place_of_another_kind_is_reported() -> None:
    document = _planar()
    for stop in document["stops"]:
        stop["location"] = {"lat": 52.5, "lon": 13.4}
    document["matrix"] = None
    errors = _errors(document)
    assert [(e["pointer"], e["type"]) for e in errors] == [("/stops/0/location", "location_kind_mixed")]


def test_pointers_escape_member_names() -> None:
    document = _planar()
    document["stops"][0]["a/b~c"] = 1
    assert _errors(document)[0]["pointer"] == "/stops/0/a~1b~0c"


def test_messages_never_repeat_the_input() -> None:
    secret = "x" * 5000
    document = _planar()
    document["stops"][0]["service_duration"] = secret
    document["depots"][0]["time_window"] = secret
    document["matrix"]["distances"][1][2] = secret
    for error in _errors(document):
        assert secret[:20] not in error["msg"] and len(error["msg"]) < 200, error


def test_the_error_list_is_bounded() -> None:
    document = _planar()
    size = 60
    document["depots"] = [{"id": f"d{i}", "location": {"x": i, "y": 0}} for i in range(size - 3)]
    document["matrix"] = {"distances": [[-1] * size for _ in range(size)]}
    assert len(_errors(document)) == MAX_ERRORS


def test_the_example_request_is_valid_and_documented() -> None:
    request = parse_solve_request(copy.deepcopy(EXAMPLE_REQUEST), max_stops=100)
    assert request.location_kind == "latlon" and len(request.depots) == 2 and len(request.vehicle_types) == 2
    assert any(not stop.required for stop in request.stops)
    schema = SolveRequest.model_json_schema()
    assert schema["examples"] == [EXAMPLE_REQUEST, EXAMPLE_RICHER_REQUEST]
    richer = parse_solve_request(copy.deepcopy(EXAMPLE_RICHER_REQUEST), max_stops=100)
    assert richer.shipments and richer.options.objective == "cost"
    assert schema["additionalProperties"] is False
    matrix_schema = schema["$defs"]["MatrixInput"]["properties"]["distances"]
    assert matrix_schema["items"]["items"]["type"] == "integer"


@pytest.mark.parametrize("name", ["berlin.json", "e-n22-k4.json"])
def test_the_playground_examples_are_solvable(name: str) -> None:
    from pathlib import Path

    import orjson

    path = (
        Path(__file__).resolve().parents[2] / "service" / "dev" / "static" / "playground" / "examples" / name
    )
    request = parse_solve_request(orjson.loads(path.read_bytes()), max_stops=2000)
    assert request.stops
