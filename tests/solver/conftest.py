"""The solver's tests: a solve that checks its own payload with the independent checker."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from service.solver.matrix import build_matrices
from service.solver.outcome import Progress, SolveOutcome
from service.solver.request import parse_solve_request
from service.solver.solver import solve
from tests.kit.checker import check_solution

SolveChecked = Callable[..., SolveOutcome]


@pytest.fixture
def solve_checked() -> SolveChecked:
    """solve() on a document; the payload must pass the independent checker."""

    def run(
        document: dict[str, Any],
        *,
        time_limit_s: float = 0.5,
        seed: int = 1,
        expect_feasible: bool = True,
        on_progress: Callable[[Progress], None] = lambda progress: None,
    ) -> SolveOutcome:
        request = parse_solve_request(copy.deepcopy(document), max_stops=10_000)
        outcome = solve(
            request, time_limit_s=time_limit_s, seed=seed, on_progress=on_progress, should_stop=lambda: False
        )
        assert outcome.status == "succeeded", outcome
        assert outcome.payload is not None
        distances, durations = build_matrices(request)
        check_solution(document, distances, durations, outcome.payload, expect_feasible=expect_feasible)
        return outcome

    return run
