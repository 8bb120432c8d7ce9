"""Importing a scenario from a file: a CSV of stops or a VRPLIB instance becomes a scenario whose
request a solve accepts; a malformed file is a 422 naming each bad line (an editor's numbering, the
CSV header being line 1), with nothing written; other media types 415, oversized bodies 413."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from service.solver.request import parse_solve_request
from tests.conftest import AppFactory, client_for
from tests.kit.sql import SqlAdmin
from tests.planning.conftest import Caller, row_snapshot, sign_in

DATA = Path(__file__).resolve().parents[1] / "kit" / "data"
FLEET = {"depot_lat": 52.52, "depot_lon": 13.40, "vehicles": 3, "capacity": 10}
CSV = (
    "id,lat,lon,demand,service_duration,tw_start,tw_end,required,prize\n"
    "s1,52.50,13.35,3,300,08:00,12:00,,\n"
    "s2,52.53,13.45,2,120,28800,43200,true,\n"
    "\n"
    's3,52.49,13.38,1,0,,,no,"800"\n'
)


def vrplib_text(name: str) -> str:
    """A benchmark instance as published (tests/kit/data holds copies)."""
    return (DATA / name).read_text()


async def new_session(caller: Caller) -> str:
    response = await caller.call("POST", "/sessions", {"name": "imports"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def upload(
    caller: Caller, session_id: str, body: str | bytes, content_type: str, **params: Any
) -> httpx.Response:
    return await caller.call(
        "POST",
        f"/sessions/{session_id}/scenarios/import",
        content=body.encode() if isinstance(body, str) else body,
        headers={"content-type": content_type},
        params=params,
    )


async def imported_request(caller: Caller, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    scenario = await caller.call("GET", response.headers["location"].removeprefix("/api/v1"))
    assert scenario.status_code == 200
    request: dict[str, Any] = scenario.json()["request"]
    return request


def lines(response: httpx.Response) -> list[int | None]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return [error.get("line") for error in response.json()["errors"]]


async def test_a_csv_of_stops_becomes_a_solvable_scenario(alice: Caller) -> None:
    session_id = await new_session(alice)
    response = await upload(alice, session_id, CSV, "text/csv", name="Monday", **FLEET)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "Monday" and body["session_id"] == session_id
    assert set(body) == {
        "id",
        "session_id",
        "name",
        "created_by",
        "created_at",
        "updated_at",
    }  # as POST …/scenarios
    assert response.headers["location"] == f"/api/v1/scenarios/{body['id']}"
    assert response.headers["etag"] == '"1"'
    request = await imported_request(alice, response)
    parse_solve_request(request, max_stops=10)  # solvable as it is
    assert request["depots"] == [{"id": "depot", "location": {"lat": 52.52, "lon": 13.40}}]
    assert request["vehicle_types"] == [{"id": "vehicle", "count": 3, "capacity": 10, "depot": "depot"}]
    assert request["stops"] == [
        {
            "id": "s1",
            "location": {"lat": 52.50, "lon": 13.35},
            "demand": 3,
            "service_duration": 300,
            "time_window": [28800, 43200],
        },
        {
            "id": "s2",
            "location": {"lat": 52.53, "lon": 13.45},
            "demand": 2,
            "service_duration": 120,
            "time_window": [28800, 43200],
            "required": True,
        },
        {
            "id": "s3",
            "location": {"lat": 52.49, "lon": 13.38},
            "demand": 1,
            "service_duration": 0,
            "required": False,
            "prize": 800,
        },
    ]
    # It is the scenario's original too, as for any created scenario.
    original = await alice.call("GET", f"/scenarios/{body['id']}/original")
    assert original.json() == request


async def test_csv_in_other_spellings_imports_the_same(alice: Caller) -> None:
    session_id = await new_session(alice)
    semicolons = "\ufeffID;Lat;Lon;Demand\r\ns1;52.5;13.35;3\r\n"
    request = await imported_request(alice, await upload(alice, session_id, semicolons, "text/csv", **FLEET))
    assert request["stops"] == [{"id": "s1", "location": {"lat": 52.5, "lon": 13.35}, "demand": 3}]
    latin = "id,lat,lon,demand\nMüller,52.5,13.35,3\n".encode("cp1252")
    request = await imported_request(
        alice, await upload(alice, session_id, latin, "text/csv; charset=windows-1252", **FLEET)
    )
    assert request["stops"][0]["id"] == "Müller"
    # A stop may be called `depot`: the depot then takes another id.
    named = "id,lat,lon,demand\ndepot,52.5,13.35,3\n"
    request = await imported_request(alice, await upload(alice, session_id, named, "text/csv", **FLEET))
    assert request["depots"][0]["id"] == "depot-2"


async def test_a_malformed_csv_names_every_bad_line(alice: Caller, clean_db: SqlAdmin) -> None:
    session_id = await new_session(alice)
    before = await row_snapshot(clean_db, alice.user_id)
    body = (
        "id,lat,lon,demand,tw_start,tw_end\n"  # 1
        "s1,52.50,13.35,3,08:00,12:00\n"  # 2 fine
        "s2,52.51,13.36,three,,\n"  # 3 demand not a number
        "s3,95,13.37,1,,\n"  # 4 latitude out of range (the solver's check)
        "\n"  # 5 blank: skipped
        "s4,52.52,13.38,1\n"  # 6 too few fields
        "s5,52.53,13.39,1,12:00,08:00\n"  # 7 window the wrong way round
        "s6,52.54,13.40,1.5,,\n"  # 8 not a whole number
        "s7,52.55,13.41,-1,,\n"  # 9 negative demand (the solver's check)
        "s8,52.56,13.42,1,09:00,\n"  # 10 half a window
    )
    response = await upload(alice, session_id, body, "text/csv", **FLEET)
    assert lines(response) == [3, 4, 6, 7, 8, 9, 10]
    columns = {error["line"]: error["loc"] for error in response.json()["errors"]}
    assert (
        columns[3] == ["body", "demand"]
        and columns[4] == ["body", "lat"]
        and columns[7] == ["body", "tw_start"]
    )
    assert await row_snapshot(clean_db, alice.user_id) == before


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", [1]),  # empty: no header
        ("id,lat,lon\ns1,52.5,13.4\n", [1]),  # demand column missing
        ("id,lat,lon,demand,colour\n", [1]),  # unknown column
        ("id,lat,lon,demand\n", [2]),  # a header and no stops
        ('id,lat,lon,demand\ns1,52.5,13.4,1\n"s2,52.5,13.4,1\n', [3]),  # unclosed quote
        ("id,lat,lon,demand\ns1,52.5,13.4,1\ns1,52.6,13.5,1\n", [3]),  # duplicate id
        ("id,lat,lon,demand\ns1,nan,13.4,1\n", [2]),
        ("id,lat,lon,demand\n,52.5,13.4,1\n", [2]),  # empty id
    ],
)
async def test_csv_mistakes_are_422_at_their_line(alice: Caller, body: str, expected: list[int]) -> None:
    session_id = await new_session(alice)
    assert lines(await upload(alice, session_id, body, "text/csv", **FLEET)) == expected


async def test_invalid_utf8_is_reported_at_its_line(alice: Caller) -> None:
    session_id = await new_session(alice)
    body = b"id,lat,lon,demand\ns1,52.5,13.4,1\ns\xff2,52.5,13.4,1\n"
    assert lines(await upload(alice, session_id, body, "text/csv", **FLEET)) == [3]


async def test_at_most_fifty_errors(alice: Caller) -> None:
    session_id = await new_session(alice)
    body = "id,lat,lon,demand\n" + "".join(f"s{i},52.5,13.4,x\n" for i in range(200))
    response = await upload(alice, session_id, body, "text/csv", **FLEET)
    assert lines(response) == list(range(2, 52))


async def test_csv_needs_its_depot_and_fleet_from_the_query(alice: Caller) -> None:
    session_id = await new_session(alice)
    response = await upload(alice, session_id, CSV, "text/csv", depot_lat=52.5)
    assert response.status_code == 422
    assert sorted(error["loc"][1] for error in response.json()["errors"]) == [
        "capacity",
        "depot_lon",
        "vehicles",
    ]
    bad = await upload(alice, session_id, CSV, "text/csv", **{**FLEET, "depot_lat": 91})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["query", "depot_lat"]
    typo = await upload(alice, session_id, CSV, "text/csv", depot_lng=13.4, **FLEET)
    assert typo.status_code == 422


async def test_a_vrplib_instance_becomes_a_solvable_scenario(alice: Caller) -> None:
    session_id = await new_session(alice)
    response = await upload(alice, session_id, vrplib_text("E-n22-k4.vrp"), "text/plain")
    assert response.json()["name"] == "E-n22-k4"
    request = await imported_request(alice, response)
    parse_solve_request(request, max_stops=100)
    assert len(request["stops"]) == 21
    assert request["depots"] == [{"id": "depot", "location": {"x": 145.0, "y": 215.0}}]
    # Without VEHICLES, one per stop; CAPACITY as given. Ids are the node numbers minus one.
    assert request["vehicle_types"] == [{"id": "vehicle", "count": 21, "capacity": 6000, "depot": "depot"}]
    assert request["stops"][0] == {"id": "1", "location": {"x": 151.0, "y": 264.0}, "demand": 1100}

    rc208 = await imported_request(
        alice, await upload(alice, session_id, vrplib_text("RC208.vrp"), "text/plain", scale=10, name="rc")
    )
    parse_solve_request(rc208, max_stops=100)
    assert rc208["vehicle_types"][0] == {
        "id": "vehicle",
        "count": 25,
        "capacity": 1000,
        "depot": "depot",
        "shift": [0, 9600],
    }
    # Scaled by 10: coordinates, windows and the service time.
    assert rc208["stops"][0] == {
        "id": "1",
        "location": {"x": 250.0, "y": 850.0},
        "demand": 20,
        "service_duration": 100,
        "time_window": [3880, 9110],
    }


async def test_an_explicit_matrix_is_imported_in_request_order(alice: Caller) -> None:
    session_id = await new_session(alice)
    body = (
        "NAME : tiny\nTYPE : CVRP\nDIMENSION : 3\nCAPACITY : 5\nVEHICLES : 2\n"
        "EDGE_WEIGHT_TYPE : EXPLICIT\nEDGE_WEIGHT_FORMAT : LOWER_ROW\n"
        "EDGE_WEIGHT_SECTION\n7\n9 4\n"
        "DEMAND_SECTION\n1 2\n2 0\n3 1\nDEPOT_SECTION\n2\n-1\nEOF\n"
    )
    request = await imported_request(alice, await upload(alice, session_id, body, "text/plain"))
    # The depot is node 2: it comes first, then nodes 1 and 3 (ids 0 and 2).
    assert [stop["id"] for stop in request["stops"]] == ["0", "2"]
    assert request["matrix"] == {"distances": [[0, 7, 4], [7, 0, 9], [4, 9, 0]]}
    parse_solve_request(request, max_stops=10)


async def test_a_malformed_vrplib_instance_names_every_bad_line(alice: Caller, clean_db: SqlAdmin) -> None:
    session_id = await new_session(alice)
    before = await row_snapshot(clean_db, alice.user_id)
    body = (
        "NAME : broken\n"  # 1
        "DIMENSION : 4\n"  # 2
        "CAPACITY : 10\n"  # 3
        "EDGE_WEIGHT_TYPE : EUC_2D\n"  # 4
        "NODE_COORD_SECTION\n"  # 5
        "1 0 0\n"  # 6
        "2 10 ten\n"  # 7 not a number
        "3 20 20\n"  # 8
        "4 30\n"  # 9 a value missing
        "DEMAND_SECTION\n"  # 10
        "1 0\n"  # 11
        "2 3\n"  # 12
        "4 1\n"  # 13 node 3 expected
        "3 -2\n"  # 14 node 4 expected
        "DEPOT_SECTION\n"  # 15
        "1\n"  # 16
        "-1\n"  # 17
        "EOF\n"
    )
    assert lines(await upload(alice, session_id, body, "text/plain")) == [7, 9, 13, 14]
    assert await row_snapshot(clean_db, alice.user_id) == before


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", []),  # nothing: DIMENSION, CAPACITY and the sections are missing (no line to name)
        ("just words\n", [1]),
        ("NAME : x\nTYPE : TSP\n", [2]),
        ("DIMENSION : 2\nDIMENSION : 3\n", [2]),
        ("DIMENSION : two\n", [1]),
        ("DIMENSION : 2\nCAPACITY : 1\nnode_coord_section\n", [3]),  # keywords are upper case
        ("DIMENSION : 2\nCAPACITY : 1\nEDGE_WEIGHT_TYPE : explicit\n", [3]),
        ("DIMENSION : 2\nCAPACITY : 1\nEDGE_WEIGHT_TYPE : GEO\n", [3]),
        ("DIMENSION : 3\nCAPACITY : 9\nDEMAND_SECTION\n1 0\n2 1\n3 1\nPICKUP_SECTION\n", [7]),
        ("DIMENSION : 2\nCAPACITY : 9\nNODE_COORD_SECTION\n1 0 0\n2 1 1\nCAPACITY : 3\n", [6]),
        (
            "DIMENSION : 3\nCAPACITY : 9\nNODE_COORD_SECTION\n1 0 0\n2 1 1\n3 2 2\n"
            "DEMAND_SECTION\n1 0\n2 1\n3 1\nDEPOT_SECTION\n1\n2\n-1\n",
            [13],  # a second depot
        ),
        (
            "DIMENSION : 3\nCAPACITY : 9\nNODE_COORD_SECTION\n1 0 0\n2 1 1\n3 2 2\n"
            "DEMAND_SECTION\n1 0\n2 1\n3 1\nTIME_WINDOW_SECTION\n1 0 100\n2 50 10\n3 0 100\n",
            [13],  # a window the wrong way round
        ),
        (
            "DIMENSION : 3\nCAPACITY : 9\nNODE_COORD_SECTION\n1 0 0\n2 1 1\nDEMAND_SECTION\n1 0\n2 1\n3 1\n",
            [3],  # a section a row short: at its header
        ),
        (
            "DIMENSION : 3\nCAPACITY : 20000000000\nNODE_COORD_SECTION\n1 0 0\n2 1 1\n3 2 2\n"
            "DEMAND_SECTION\n1 0\n2 1\n3 1\n",
            [2],
        ),
    ],
)
async def test_vrplib_mistakes_are_422_at_their_line(alice: Caller, body: str, expected: list[int]) -> None:
    session_id = await new_session(alice)
    found = lines(await upload(alice, session_id, body, "text/plain"))
    # What the file lacks as a whole (a section, DIMENSION) has no line, and comes last.
    assert [line for line in found if line is not None] == expected
    assert found == sorted(found, key=lambda line: (line is None, line or 0))


async def test_vrplib_refuses_csv_only_parameters(alice: Caller) -> None:
    session_id = await new_session(alice)
    response = await upload(alice, session_id, vrplib_text("E-n22-k4.vrp"), "text/plain", depot_lat=1)
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["query", "depot_lat"]
    response = await upload(alice, session_id, CSV, "text/csv", scale=10, **FLEET)
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["query", "scale"]


async def test_other_media_types_and_charsets_are_415(alice: Caller, clean_db: SqlAdmin) -> None:
    session_id = await new_session(alice)
    before = await row_snapshot(clean_db, alice.user_id)
    for content_type in ("application/json", "application/xml", "text/html", "text/csv; charset=utf-16"):
        response = await upload(alice, session_id, "id,lat\n", content_type, **FLEET)
        assert response.status_code == 415, (content_type, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    no_body = await alice.call("POST", f"/sessions/{session_id}/scenarios/import", params=FLEET)
    assert no_body.status_code == 415
    assert await row_snapshot(clean_db, alice.user_id) == before


async def test_another_users_session_answers_as_a_missing_one(alice: Caller, bob: Caller) -> None:
    session_id = await new_session(alice)
    foreign = await upload(bob, session_id, CSV, "text/csv", **FLEET)
    missing = await upload(bob, "00000000-0000-4000-8000-000000000000", CSV, "text/csv", **FLEET)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"] == missing.json()["detail"]
    unauthenticated = await alice.http.post(
        f"/api/v1/sessions/{session_id}/scenarios/import", content=CSV, headers={"content-type": "text/csv"}
    )
    assert unauthenticated.status_code == 401


async def test_files_over_the_import_limit_are_413(app_factory: AppFactory, clean_db: SqlAdmin) -> None:
    async with app_factory(import_max_body_bytes=1000) as app, client_for(app) as http:
        alice = await sign_in(app, http, "alice")
        session_id = await new_session(alice)
        body = "id,lat,lon,demand\n" + "".join(f"s{i},52.5,13.4,1\n" for i in range(100))
        response = await upload(alice, session_id, body, "text/csv", **FLEET)
        assert response.status_code == 413
        assert (await upload(alice, session_id, CSV, "text/csv", **FLEET)).status_code == 201


async def test_a_large_file_is_read_in_a_worker_process(app_factory: AppFactory, clean_db: SqlAdmin) -> None:
    # Over the inline size, the file is read and checked by the offload processes: the same answers.
    async with app_factory(solve_inline_check_bytes=100) as app, client_for(app) as http:
        alice = await sign_in(app, http, "alice")
        session_id = await new_session(alice)
        request = await imported_request(alice, await upload(alice, session_id, CSV, "text/csv", **FLEET))
        assert len(request["stops"]) == 3
        bad = await upload(alice, session_id, CSV.replace("s2,52.53", "s2,ninety"), "text/csv", **FLEET)
        assert lines(bad) == [3]


async def test_more_stops_than_a_solve_takes_are_refused_at_the_first_extra_line(
    app_factory: AppFactory, clean_db: SqlAdmin
) -> None:
    async with app_factory(solve_max_stops=5) as app, client_for(app) as http:
        alice = await sign_in(app, http, "alice")
        session_id = await new_session(alice)
        body = "id,lat,lon,demand\n" + "".join(f"s{i},52.5,13.4,1\n" for i in range(8))
        assert lines(await upload(alice, session_id, body, "text/csv", **FLEET)) == [7]
        vrp = vrplib_text("E-n22-k4.vrp")
        response = await upload(alice, session_id, vrp, "text/plain")
        assert lines(response) == [4]  # DIMENSION
