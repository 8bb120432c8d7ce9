"""The solve surface is typed in the OpenAPI document: the solvable request is a named schema linked
from where a request is written, a solution's status is an enum, and a solve's payload has real
schemas, with units and examples, that real solves match."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
from jsonschema_rs import Draft202012Validator  # schemathesis brings it: the same validator it uses

from service.solver.example import EXAMPLE_REQUEST
from service.solver.outcome import SolutionStatus
from service.solver.plan import REASON_CODES
from tests.kit.worker import WorkerProcess
from tests.planning.conftest import Caller
from tests.solving.conftest import new_scenario, until_status

API = "/api/v1"


@pytest.fixture
async def document(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def validator(document: dict[str, Any], name: str) -> Draft202012Validator:
    """A validator of `#/components/schemas/<name>`, its references resolved within the document."""
    return Draft202012Validator({**document, "$ref": f"#/components/schemas/{name}"})


def test_the_solvable_request_is_a_named_schema_linked_from_where_requests_are_written(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    solvable = schemas["SolveRequest"]
    assert set(solvable["required"]) == {"depots", "stops", "vehicle_types"}
    words = " ".join(solvable["description"].split())
    assert "metres" in words and "seconds from the start of the planning day" in words
    for example in solvable["examples"]:
        validator(document, "SolveRequest").validate(example)
    errors = list(validator(document, "SolveRequest").iter_errors({"depots": [], "stops": "none"}))
    assert errors  # the schema says something
    link = "(#/components/schemas/SolveRequest)"
    solve = document["paths"][f"{API}/scenarios/{{scenario_id}}/solve"]["post"]
    assert link in solve["description"] and "(#/components/schemas/SolutionPayload)" in solve["description"]
    created = document["paths"][f"{API}/sessions/{{session_id}}/scenarios"]["post"]
    request = created["requestBody"]["content"]["application/json"]["schema"]["properties"]["request"]
    assert request["type"] == "object" and request.get("additionalProperties", True) is True  # any object
    assert link in request["description"]
    assert link in schemas["ScenarioRead"]["properties"]["request"]["description"]


def _resolved(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema, or the component its `$ref` names (possibly wrapped in `allOf`)."""
    ref = schema.get("$ref") or next(
        (part["$ref"] for part in schema.get("allOf", []) if "$ref" in part), None
    )
    if ref is None:
        return schema
    found: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return found


def test_a_solutions_status_is_an_enum_everywhere(document: dict[str, Any]) -> None:
    found = []
    for name, schema in document["components"]["schemas"].items():
        status = schema.get("properties", {}).get("status")
        if name.startswith("Solution") and status is not None:
            found.append(name)
            status = _resolved(document, status)
            assert set(status["enum"]) == set(SolutionStatus), name
    assert {"SolutionSummary", "SolutionRead"} <= set(found)
    for path in (f"{API}/scenarios/{{scenario_id}}/solutions", f"{API}/solutions/{{solution_id}}"):
        for operation in document["paths"][path].values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            status = body.get("schema", {}).get("properties", {}).get("status")
            if status is not None:  # what a client may record: a solution it found, or not
                assert status["enum"] == ["succeeded", "failed"]


def test_the_payload_schema_has_units_and_an_example_that_matches_it(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    payload = schemas["SolutionPayload"]
    assert {"feasible", "distance", "duration", "routes", "unassigned", "solver", "scenario_version"} <= set(
        payload["required"]
    )
    route = schemas["RoutePlan"]["properties"]
    assert "Metres" in route["distance"]["description"]
    assert "seconds from the start of the planning day" in " ".join(
        schemas["RoutePlan"]["description"].split()
    )
    for example in payload["examples"]:
        validator(document, "SolutionPayload").validate(example)
    read = schemas["SolutionRead"]["properties"]["payload"]
    assert {"$ref": "#/components/schemas/SolutionPayload"} in read["anyOf"]


async def test_a_real_solve_matches_the_documented_shapes(
    alice: Caller, worker: WorkerProcess, document: dict[str, Any]
) -> None:
    scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    queued = await alice.call("POST", f"/scenarios/{scenario_id}/solve", {"time_limit_s": 1})
    assert queued.status_code == 202, queued.text
    validator(document, "SolutionSummary").validate(queued.json())
    done = await until_status(alice, queued.json()["id"], "succeeded", "failed")
    assert done["status"] == "succeeded", done
    validator(document, "SolutionRead").validate(done)
    validator(document, "SolutionPayload").validate(done["payload"])  # not merely "any object"
    stopped = done["progress"]
    validator(document, "Progress").validate(stopped)


def test_visits_and_unassigned_reasons_are_typed_not_any_object(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert {"cost", "unassigned_required"} <= set(schemas["SolutionPayload"]["required"])
    unassigned = _resolved(document, schemas["SolutionPayload"]["properties"]["unassigned"]["items"])
    assert unassigned["required"] == ["id", "reasons"]
    assert set(unassigned["properties"]["reasons"]["items"]["enum"]) == set(REASON_CODES)
    route = schemas["RoutePlan"]
    assert {"vehicle", "visits"} <= set(route["required"])
    visit = _resolved(document, route["properties"]["visits"]["items"])
    assert set(visit["properties"]["kind"]["enum"]) == {"stop", "pickup", "delivery", "reload"}


async def test_a_stop_no_van_can_carry_comes_back_with_its_reason(
    alice: Caller, worker: WorkerProcess, document: dict[str, Any]
) -> None:
    # As a new user would try it: a demand of 999 on vans of capacity 30, solved by a real worker.
    request = {
        "depots": [{"id": "d1", "location": {"x": 0, "y": 0}}],
        "stops": [
            {"id": "s1", "location": {"x": 10, "y": 0}, "demand": 3},
            {"id": "s7", "location": {"x": 20, "y": 0}, "demand": 999},
        ],
        "shipments": [
            {"id": "p1", "amount": 4, "pickup": {"location": {"x": 5, "y": 5}},
             "delivery": {"location": {"x": 15, "y": 5}}},
        ],
        "vehicle_types": [{"id": "van", "count": 4, "capacity": 30, "depot": "d1"}],
    }  # fmt: skip
    scenario_id = await new_scenario(alice, request)
    queued = await alice.call("POST", f"/scenarios/{scenario_id}/solve", {"time_limit_s": 1})
    assert queued.status_code == 202, queued.text
    done = await until_status(alice, queued.json()["id"], "succeeded", "failed")
    assert done["status"] == "succeeded", done
    validator(document, "SolutionPayload").validate(done["payload"])
    payload = done["payload"]
    assert payload["unassigned"] == [{"id": "s7", "reasons": ["demand_exceeds_capacity"]}]
    assert payload["unassigned_required"] == 1
    (route,) = payload["routes"]
    assert route["vehicle"] == 0 and route["stops"] == ["s1"]
    kinds = [(visit["id"], visit["kind"]) for visit in route["visits"]]
    assert kinds.index(("p1", "pickup")) < kinds.index(("p1", "delivery"))
