"""A solution as GeoJSON: the structure RFC 7946 asks for ([lon, lat] positions, LineStrings of two
positions or more, a FeatureCollection of Features with properties), for lat/lon scenarios only."""

from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import AppFactory, client_for
from tests.kit.sql import SqlAdmin
from tests.planning.conftest import Caller, sign_in
from tests.solving.conftest import new_scenario
from tests.solving.test_compare import PLAN_A, PLAN_B, REQUEST, insert_solution

GEOJSON = "application/geo+json"


def place(request: dict[str, Any], place_id: str) -> list[float]:
    for item in request["depots"] + request["stops"]:
        if item["id"] == place_id:
            return [item["location"]["lon"], item["location"]["lat"]]
    raise KeyError(place_id)


def check_rfc7946(document: dict[str, Any]) -> None:
    """RFC 7946 §3: the members every FeatureCollection, Feature and geometry must have, and
    positions of two numbers with the longitude first, inside WGS84's bounds."""
    assert document["type"] == "FeatureCollection"
    assert isinstance(document["features"], list)
    for feature in document["features"]:
        assert feature["type"] == "Feature"
        assert set(feature) >= {"geometry", "properties"}
        assert isinstance(feature["properties"], dict)
        geometry = feature["geometry"]
        positions = geometry["coordinates"] if geometry["type"] == "LineString" else [geometry["coordinates"]]
        assert geometry["type"] in {"LineString", "Point"}
        if geometry["type"] == "LineString":
            assert len(positions) >= 2
        for position in positions:
            assert len(position) == 2 and all(isinstance(v, int | float) for v in position)
            lon, lat = position
            assert -180 <= lon <= 180 and -90 <= lat <= 90


async def test_a_plan_is_a_feature_collection_of_routes_and_visits(alice: Caller, clean_db: SqlAdmin) -> None:
    scenario_id = await new_scenario(alice, REQUEST)
    solution_id = await insert_solution(clean_db, alice.user_id, scenario_id, PLAN_A)

    response = await alice.call("GET", f"/solutions/{solution_id}", headers={"Accept": GEOJSON})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == GEOJSON
    # Its own validator (JSON is another representation), which no If-Match of a write accepts.
    assert response.headers["etag"] == '"1-geojson"'
    assert "accept" in response.headers["vary"].lower()
    document = response.json()
    check_rfc7946(document)
    lines = [f for f in document["features"] if f["geometry"]["type"] == "LineString"]
    points = [f for f in document["features"] if f["geometry"]["type"] == "Point"]
    assert len(lines) == len(PLAN_A["routes"])
    depot = place(REQUEST, "d1")
    for index, (line, route) in enumerate(zip(lines, PLAN_A["routes"], strict=True)):
        assert line["properties"] == {
            "vehicle_type": route["vehicle_type"],
            "vehicle": route["vehicle"],
            "distance": route["distance"],
            "duration": route["duration"],
        }
        # Depot, the stops in order ([lon, lat], as the request placed them), back to the depot.
        assert line["geometry"]["coordinates"] == [depot, *(place(REQUEST, s) for s in route["stops"]), depot]
        visits = [p for p in points if p["properties"]["route"] == index]
        assert [p["properties"]["id"] for p in visits] == route["stops"]
        assert [p["properties"]["arrival"] for p in visits] == [v["arrival"] for v in route["visits"]]
        assert [p["geometry"]["coordinates"] for p in visits] == [place(REQUEST, s) for s in route["stops"]]


async def test_format_geojson_asks_for_it_too_and_json_stays_the_default(
    alice: Caller, clean_db: SqlAdmin
) -> None:
    scenario_id = await new_scenario(alice, REQUEST)
    solution_id = await insert_solution(clean_db, alice.user_id, scenario_id, PLAN_B)

    by_query = await alice.call("GET", f"/solutions/{solution_id}", params={"format": "geojson"})
    assert by_query.status_code == 200 and by_query.headers["content-type"] == GEOJSON
    check_rfc7946(by_query.json())
    # An older payload (no vehicle numbers, no visits): vehicles by order within their type, visits from stops.
    lines = [f["properties"] for f in by_query.json()["features"] if f["geometry"]["type"] == "LineString"]
    assert [(p["vehicle_type"], p["vehicle"]) for p in lines] == [("van", 0), ("van", 1), ("truck", 0)]

    for accept in (
        None,
        "application/json",
        f"application/json, {GEOJSON}",
        f"{GEOJSON};q=0.5, application/json",
    ):
        headers = {} if accept is None else {"Accept": accept}
        plain = await alice.call("GET", f"/solutions/{solution_id}", headers=headers)
        assert plain.status_code == 200
        assert plain.headers["content-type"] == "application/json", accept
        assert plain.json()["payload"] == PLAN_B
    preferred = await alice.call(
        "GET", f"/solutions/{solution_id}", headers={"Accept": f"{GEOJSON}, */*;q=0.1"}
    )
    assert preferred.headers["content-type"] == GEOJSON
    asked_json = await alice.call(
        "GET", f"/solutions/{solution_id}", params={"format": "json"}, headers={"Accept": GEOJSON}
    )
    assert asked_json.headers["content-type"] == "application/json"


async def test_a_solve_is_drawn_from_its_own_snapshot_of_the_request(
    alice: Caller, clean_db: SqlAdmin
) -> None:
    # The scenario has been edited to planar places since: the solve's snapshot still has a map.
    planar = {
        **REQUEST,
        "depots": [{"id": "d1", "location": {"x": 0, "y": 0}}],
        "stops": [{**stop, "location": {"x": 1, "y": 1}} for stop in REQUEST["stops"]],
    }
    scenario_id = await new_scenario(alice, planar)
    solution_id = await insert_solution(clean_db, alice.user_id, scenario_id, PLAN_A, request=REQUEST)
    response = await alice.call("GET", f"/solutions/{solution_id}", headers={"Accept": GEOJSON})
    assert response.status_code == 200, response.text
    check_rfc7946(response.json())


async def test_planar_scenarios_are_406(alice: Caller, clean_db: SqlAdmin) -> None:
    planar = {
        **REQUEST,
        "depots": [{"id": "d1", "location": {"x": 0, "y": 0}}],
        "stops": [{**stop, "location": {"x": 1, "y": 1}} for stop in REQUEST["stops"]],
    }
    scenario_id = await new_scenario(alice, planar)
    solution_id = await insert_solution(clean_db, alice.user_id, scenario_id, PLAN_A)
    response = await alice.call("GET", f"/solutions/{solution_id}", headers={"Accept": GEOJSON})
    assert response.status_code == 406, response.text
    assert response.headers["content-type"] == "application/problem+json"
    # JSON is still there for it.
    assert (await alice.call("GET", f"/solutions/{solution_id}")).status_code == 200


async def test_no_payload_is_409_and_another_users_solution_404(
    alice: Caller, bob: Caller, clean_db: SqlAdmin
) -> None:
    scenario_id = await new_scenario(alice, REQUEST)
    pending = await insert_solution(clean_db, alice.user_id, scenario_id, None, status="pending")
    response = await alice.call("GET", f"/solutions/{pending}", headers={"Accept": GEOJSON})
    assert response.status_code == 409, response.text

    mine = await insert_solution(clean_db, alice.user_id, scenario_id, PLAN_A)
    foreign = await bob.call("GET", f"/solutions/{mine}", headers={"Accept": GEOJSON})
    missing = await bob.call("GET", f"/solutions/{uuid.uuid4()}", headers={"Accept": GEOJSON})
    assert foreign.status_code == missing.status_code == 404
    assert foreign.content == missing.content


async def test_payloads_and_requests_that_hold_no_map_are_409_never_500(
    alice: Caller, clean_db: SqlAdmin
) -> None:
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        (REQUEST, {"routes": [{"vehicle_type": "van", "stops": ["nowhere"]}]}),
        (REQUEST, {"routes": [{"vehicle_type": "bicycle", "stops": ["s1"]}]}),
        (REQUEST, {"routes": "none"}),
        ({"anything": True}, PLAN_A),
        ({**REQUEST, "vehicle_types": [{"id": "van", "depot": "elsewhere"}]}, PLAN_B),
        ({**REQUEST, "depots": [{"id": "d1", "location": {"lat": 91, "lon": 0}}]}, PLAN_B),
    ]
    for request, payload in cases:
        scenario_id = await new_scenario(alice, request)
        solution_id = await insert_solution(clean_db, alice.user_id, scenario_id, payload)
        response = await alice.call("GET", f"/solutions/{solution_id}", params={"format": "geojson"})
        assert response.status_code == 409, (request, payload, response.text)


async def test_an_unknown_format_is_422(alice: Caller, clean_db: SqlAdmin) -> None:
    scenario_id = await new_scenario(alice, REQUEST)
    solution_id = await insert_solution(clean_db, alice.user_id, scenario_id, PLAN_A)
    response = await alice.call("GET", f"/solutions/{solution_id}", params={"format": "kml"})
    assert response.status_code == 422


async def test_a_large_plan_is_drawn_in_a_worker_process(app_factory: AppFactory, clean_db: SqlAdmin) -> None:
    async with app_factory(json_inline_max_bytes=0) as app, client_for(app) as http:
        alice = await sign_in(app, http, "alice")
        solution_id = await insert_solution(
            clean_db, alice.user_id, await new_scenario(alice, REQUEST), PLAN_A
        )
        response = await alice.call("GET", f"/solutions/{solution_id}", headers={"Accept": GEOJSON})
        assert response.status_code == 200, response.text
        check_rfc7946(response.json())
        planar = {**REQUEST, "depots": [{"id": "d1", "location": {"x": 0, "y": 0}}]}
        solution_id = await insert_solution(
            clean_db, alice.user_id, await new_scenario(alice, planar), PLAN_A
        )
        response = await alice.call("GET", f"/solutions/{solution_id}", headers={"Accept": GEOJSON})
        assert response.status_code == 406


async def test_shipments_and_reloads_are_drawn_where_they_happen(alice: Caller, clean_db: SqlAdmin) -> None:
    pickup, delivery = {"lat": 52.51, "lon": 13.38}, {"lat": 52.49, "lon": 13.42}
    request = {
        **REQUEST,
        "depots": [*REQUEST["depots"], {"id": "d2", "location": {"lat": 52.40, "lon": 13.50}}],
        "shipments": [
            {"id": "p1", "amount": 1, "pickup": {"location": pickup}, "delivery": {"location": delivery}}
        ],
        "vehicle_types": [{"id": "van", "count": 1, "capacity": 3, "depot": "d1", "end_depot": "d2"}],
    }
    visits = [
        {"id": "p1", "kind": "pickup", "arrival": 100},
        {"id": "s1", "kind": "stop", "arrival": 200},
        {"id": "d1", "kind": "reload", "arrival": 300},
        {"id": "p1", "kind": "delivery", "arrival": 400},
    ]
    payload = {
        "routes": [
            {
                "vehicle_type": "van",
                "vehicle": 0,
                "stops": ["s1"],
                "visits": visits,
                "distance": 1,
                "duration": 2,
            }
        ],
        "unassigned": [],
    }
    solution_id = await insert_solution(clean_db, alice.user_id, await new_scenario(alice, request), payload)
    document = (await alice.call("GET", f"/solutions/{solution_id}", params={"format": "geojson"})).json()
    check_rfc7946(document)
    line, *points = document["features"]
    start, end = place(request, "d1"), place(request, "d2")
    at_pickup, at_delivery = [pickup["lon"], pickup["lat"]], [delivery["lon"], delivery["lat"]]
    assert line["geometry"]["coordinates"] == [
        start,
        at_pickup,
        place(request, "s1"),
        start,
        at_delivery,
        end,
    ]
    assert [(p["properties"]["id"], p["properties"]["kind"]) for p in points] == [
        ("p1", "pickup"),
        ("s1", "stop"),
        ("d1", "reload"),
        ("p1", "delivery"),
    ]
