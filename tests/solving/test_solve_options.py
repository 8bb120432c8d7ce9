"""Solve options are as strict as the request document: a number is a JSON integer, never a string,
a boolean or a float that happens to be whole."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from service.solver.example import EXAMPLE_REQUEST
from tests.planning.conftest import Caller
from tests.solving.conftest import new_scenario


@pytest.mark.parametrize(
    ("options", "member"),
    [
        ({"time_limit_s": "10"}, "time_limit_s"),
        ({"time_limit_s": True}, "time_limit_s"),
        ({"time_limit_s": 10.0}, "time_limit_s"),
        ({"time_limit_s": None}, "time_limit_s"),
        ({"seed": "1"}, "seed"),
        ({"seed": False}, "seed"),
        ({"seed": 1.0}, "seed"),
    ],
)
async def test_options_of_another_json_type_are_422(
    alice: Caller, options: dict[str, Any], member: str
) -> None:
    scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    response = await alice.call("POST", f"/scenarios/{scenario_id}/solve", options)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["loc"] for error in response.json()["errors"]] == [["body", member]]


async def test_integer_options_are_accepted(alice: Caller) -> None:
    scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    response = await alice.call("POST", f"/scenarios/{scenario_id}/solve", {"time_limit_s": 2, "seed": 7})
    assert response.status_code == 202, response.text
