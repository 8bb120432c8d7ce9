"""Refusing an invalid solve request costs no more than accepting a valid one of the same size.

The cost is measured as the peak of memory the check allocates (tracemalloc, numpy's arrays
included), side by side with the check of a valid request of the same shape: an outcome, not a
timing. A check that made one error object per bad cell (4 million at 2,000 stops, 2.2 GB) fails
it by orders of magnitude; `bench_solve` prints the seconds.
"""

from __future__ import annotations

import copy
import json
import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from service.solver.request import MAX_ERRORS, SolveRequestInvalid, parse_solve_request
from tests.kit.instances import synthetic_request

STOPS = 600


def _check(document: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """(peak bytes the check allocated, its errors): the document is parsed before measuring."""
    parsed = orjson.loads(json.dumps(document))
    tracemalloc.start()
    try:
        parse_solve_request(parsed, max_stops=STOPS)
        errors: list[dict[str, Any]] = []
    except SolveRequestInvalid as exc:
        errors = [dict(error) for error in exc.errors]
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, errors


@pytest.fixture(scope="module")
def valid() -> dict[str, Any]:
    document = synthetic_request(STOPS, explicit_matrix=True)
    document["matrix"] = {"distances": document["matrix"]["distances"]}
    return document


def _cells(valid: dict[str, Any], cell: Callable[[int], Any]) -> dict[str, Any]:
    distances = [[cell(value) for value in row] for row in valid["matrix"]["distances"]]
    return {**valid, "matrix": {"distances": distances}}


INVALID: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "every cell a float": lambda valid: _cells(valid, lambda value: value + 0.5),
    "every cell negative": lambda valid: _cells(valid, lambda value: -value - 1),
    "every cell a boolean": lambda valid: _cells(valid, lambda value: True),
    "every cell beyond 64 bits": lambda valid: _cells(valid, lambda value: value + 2**70),
    "every stop wrong": lambda valid: {
        **valid,
        "stops": [
            {
                "id": 7,
                "location": {"lat": "north", "lon": 500},
                "demand": -1,
                "time_window": [9, 1],
                "extra": 1,
            }
            for _ in valid["stops"]
        ],
    },
    "every demand a long list of floats": lambda valid: {
        **valid,
        "stops": [{**stop, "demand": [0.5] * 1000} for stop in valid["stops"]],
    },
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_refusing_costs_no_more_than_accepting(valid: dict[str, Any], case: str) -> None:
    accepted, none = _check(copy.deepcopy(valid))
    assert none == []
    refused, errors = _check(INVALID[case](copy.deepcopy(valid)))
    assert 0 < len(errors) <= MAX_ERRORS
    # The matrix as int64 is made on both paths when every cell is an integer (the range is checked on
    # it); 1 % covers the refusal's own few error objects beside it.
    assert refused <= accepted * 1.01, f"refusing took {refused / accepted:.2f}x the memory of accepting"


def test_the_first_bad_cells_are_named_in_order(valid: dict[str, Any]) -> None:
    document = copy.deepcopy(valid)
    distances = document["matrix"]["distances"]
    for i, j in ((3, 1), (3, 7), (10, 2)):
        distances[i][j] = -5
    distances[20][20] = 0.5
    _, errors = _check(document)
    assert [error["pointer"] for error in errors] == ["/matrix/distances/20/20"]  # types come first
    distances[20][20] = 0
    _, errors = _check(document)
    assert [(error["pointer"], error["type"]) for error in errors] == [
        ("/matrix/distances/3/1", "greater_than_equal"),
        ("/matrix/distances/3/7", "greater_than_equal"),
        ("/matrix/distances/10/2", "greater_than_equal"),
    ]
    whole = _cells(valid, lambda value: value + 0.5)
    _, errors = _check(whole)
    assert [error["pointer"] for error in errors] == [
        f"/matrix/distances/{cell // (STOPS + 1)}/{cell % (STOPS + 1)}" for cell in range(MAX_ERRORS)
    ]


def test_a_bad_item_deep_in_a_long_list_is_still_found(valid: dict[str, Any]) -> None:
    document = copy.deepcopy(valid)
    document["stops"][STOPS - 1]["demand"] = "three"
    document["stops"][2]["service_duration"] = -1
    _, errors = _check(document)
    assert [error["pointer"] for error in errors] == [
        "/stops/2/service_duration",
        f"/stops/{STOPS - 1}/demand",
    ]


@pytest.mark.parametrize("member", ["depots", "vehicle_types", "stops"])
def test_a_list_longer_than_the_stop_limit_is_refused_before_its_items_are_read(
    valid: dict[str, Any], member: str
) -> None:
    document = copy.deepcopy(valid)
    document[member] = [document[member][0]] * (STOPS + 1)
    _, errors = _check(document)
    assert [(error["pointer"], error["type"]) for error in errors] == [(f"/{member}", f"too_many_{member}")]
