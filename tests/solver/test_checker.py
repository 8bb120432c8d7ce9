"""The checker itself: it accepts a correct payload and rejects each kind of defect."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.kit.checker import check_solution

MATRIX = np.array([[0, 10, 20], [10, 0, 15], [20, 15, 0]], dtype=np.int64)
DOCUMENT: dict[str, Any] = {
    "depots": [{"id": "d", "location": {"x": 0, "y": 0}}],
    "stops": [
        {
            "id": "a",
            "location": {"x": 0, "y": 10},
            "demand": 2,
            "time_window": [0, 100],
            "service_duration": 5,
        },
        {
            "id": "b",
            "location": {"x": 0, "y": 20},
            "demand": 3,
            "time_window": [30, 60],
            "service_duration": 5,
        },
    ],
    "vehicle_types": [{"id": "v", "count": 1, "capacity": 5, "depot": "d", "shift": [0, 200]}],
}
# d -> a (10, serve 5) -> b (15, arrives 30, serve 5) -> d (20): back at 55.
PAYLOAD: dict[str, Any] = {
    "feasible": True,
    "distance": 45,
    "duration": 55,
    "cost": 0,
    "routes": [
        {"vehicle_type": "v", "vehicle": 0, "stops": ["a", "b"],
         "visits": [{"id": "a", "kind": "stop", "arrival": 10}, {"id": "b", "kind": "stop", "arrival": 30}],
         "distance": 45, "duration": 55, "load": [5], "start": 0, "end": 55, "arrivals": [10, 30]},
    ],
    "unassigned": [],
    "unassigned_required": 0,
}  # fmt: skip

# The same route with a shipment p (picked up at a, delivered at b's place) and a reload at d:
# d -> a -> d (reload) -> b -> p's pickup (at a) -> p's delivery (at b) -> d.
SHIPMENT_MATRIX = np.array(
    [[0, 10, 20, 10, 20], [10, 0, 15, 0, 15], [20, 15, 0, 15, 0], [10, 0, 15, 0, 15], [20, 15, 0, 15, 0]],
    dtype=np.int64,
)


def _with_shipment_and_reload(document: dict[str, Any], payload: dict[str, Any]) -> None:
    document["shipments"] = [
        {"id": "p", "amount": 4, "pickup": {"location": {"x": 0, "y": 10}},
         "delivery": {"location": {"x": 0, "y": 20}}},
    ]  # fmt: skip
    document["vehicle_types"][0].update(capacity=4, reload_depots=["d"], max_reloads=1)
    document["stops"][1].update(time_window=[30, 200])
    route = payload["routes"][0]
    route["visits"] = [
        {"id": "a", "kind": "stop", "arrival": 10},
        {"id": "d", "kind": "reload", "arrival": 25},
        {"id": "b", "kind": "stop", "arrival": 45},
        {"id": "p", "kind": "pickup", "arrival": 65},
        {"id": "p", "kind": "delivery", "arrival": 80},
    ]
    route.update(trips=2, arrivals=[10, 45], distance=90, duration=100, end=100)
    payload.update(distance=90, duration=100)


def _swap_shipment_steps(visits: list[dict[str, Any]]) -> None:
    visits[3]["kind"], visits[4]["kind"] = "delivery", "pickup"


def _defect_on_shipment(defect: Callable[[dict[str, Any], dict[str, Any]], None]) -> Defect:
    def apply(document: dict[str, Any], payload: dict[str, Any]) -> None:
        _with_shipment_and_reload(document, payload)
        defect(document, payload)

    return apply


Defect = Callable[[dict[str, Any], dict[str, Any]], None]


def _route(payload: dict[str, Any]) -> dict[str, Any]:
    route: dict[str, Any] = payload["routes"][0]
    return route


DEFECTS: dict[str, Defect] = {
    "infeasible flag": lambda d, p: p.update(feasible=False),
    "route distance": lambda d, p: _route(p).update(distance=44),
    "total distance": lambda d, p: p.update(distance=46),
    "total duration": lambda d, p: p.update(duration=54),
    "route duration": lambda d, p: _route(p).update(duration=50),
    "stop listed twice": lambda d, p: p["unassigned"].append({"id": "a", "reasons": ["route_limit"]}),
    "required stop missing": lambda d, p: _route(p).update(
        stops=["a"], arrivals=[10], visits=_route(p)["visits"][:1]
    ),
    "unknown stop": lambda d, p: p["unassigned"].append({"id": "zz", "reasons": ["route_limit"]}),
    "unassigned without a reason": lambda d, p: (
        d["stops"].append(
            {"id": "c", "location": {"x": 0, "y": 0}, "demand": 1, "required": False, "prize": 1}
        ),
        p["unassigned"].append({"id": "c", "reasons": []}),
    ),
    "unassigned_required miscounted": lambda d, p: p.update(unassigned_required=1),
    "vehicle misnumbered": lambda d, p: _route(p).update(vehicle=1),
    "stops differ from visits": lambda d, p: _route(p).update(stops=["b", "a"]),
    "over max_distance": lambda d, p: d["vehicle_types"][0].update(max_distance=44),
    "over max_duration": lambda d, p: d["vehicle_types"][0].update(max_duration=54),
    "cost misreported": lambda d, p: d["vehicle_types"][0].update(fixed_cost=1),
    "delivery before pickup": _defect_on_shipment(lambda d, p: _swap_shipment_steps(_route(p)["visits"])),
    "shipment never delivered": _defect_on_shipment(lambda d, p: _route(p)["visits"].pop()),
    "trip over capacity without its reload": _defect_on_shipment(
        lambda d, p: (_route(p)["visits"].pop(1), _route(p).pop("trips"))
    ),
    "more reloads than allowed": _defect_on_shipment(
        lambda d, p: d["vehicle_types"][0].update(max_reloads=0)
    ),
    "shipment over capacity": _defect_on_shipment(lambda d, p: d["shipments"][0].update(amount=5)),
    "unknown vehicle type": lambda d, p: _route(p).update(vehicle_type="truck"),
    "load misreported": lambda d, p: _route(p).update(load=[4]),
    "over capacity": lambda d, p: d["vehicle_types"][0].update(capacity=4),
    "too many vehicles": lambda d, p: p["routes"].append(copy.deepcopy(_route(p))),
    "arrival before travel allows": lambda d, p: _route(p).update(arrivals=[9, 30]),
    "arrival outside window": lambda d, p: d["stops"][1].update(time_window=[40, 60]),
    "service time ignored": lambda d, p: d["stops"][0].update(service_duration=6),
    "end before the way back": lambda d, p: _route(p).update(end=54, duration=54),
    "start outside shift": lambda d, p: d["vehicle_types"][0].update(shift=[5, 200]),
    "end outside shift": lambda d, p: d["vehicle_types"][0].update(shift=[0, 50]),
    "start outside depot hours": lambda d, p: d["depots"][0].update(time_window=[1, 100]),
    "wrong end depot": lambda d, p: (
        d["depots"].append({"id": "e", "location": {"x": 0, "y": 20}}),
        d["vehicle_types"][0].update(end_depot="e"),
    ),
}


def test_a_correct_payload_passes() -> None:
    check_solution(copy.deepcopy(DOCUMENT), MATRIX, MATRIX, copy.deepcopy(PAYLOAD))


def test_a_correct_payload_with_a_shipment_and_a_reload_passes() -> None:
    document, payload = copy.deepcopy(DOCUMENT), copy.deepcopy(PAYLOAD)
    _with_shipment_and_reload(document, payload)
    check_solution(document, SHIPMENT_MATRIX, SHIPMENT_MATRIX, payload)


@pytest.mark.parametrize("defect", DEFECTS.values(), ids=DEFECTS.keys())
def test_each_defect_is_caught(defect: Defect) -> None:
    document, payload = copy.deepcopy(DOCUMENT), copy.deepcopy(PAYLOAD)
    defect(document, payload)
    matrix = SHIPMENT_MATRIX if "shipments" in document else MATRIX
    if len(document["depots"]) == 2:  # the extra depot "e" shares stop b's place
        matrix = np.array([[0, 20, 10, 20], [20, 0, 15, 0], [10, 15, 0, 15], [20, 0, 15, 0]], dtype=np.int64)
    with pytest.raises(AssertionError):
        check_solution(document, matrix, matrix, payload)
