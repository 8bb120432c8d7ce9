"""What a solve reports while it runs (`Progress`) and when it ends (`SolveOutcome`).

Plain frozen dataclasses: they cross a process boundary by pickle and carry no behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["succeeded", "cancelled", "failed"]

# The reason of a solve cancelled before any solution existed (it then ends `failed`).
CANCELLED_EARLY = "cancelled before a solution was found"
# 32 bits: PyVRP's random number generator takes a 32-bit seed.
MAX_SEED = 2**32 - 1


@dataclass(frozen=True, slots=True)
class Progress:
    elapsed_s: float
    iterations: int
    # Of the best feasible solution found so far; None while there is none.
    best_distance: int | None
    feasible: bool


@dataclass(frozen=True, slots=True)
class SolveOutcome:
    """`payload` is the solution payload (planning.schemas.SolutionPayload) without `scenario_version` (the caller adds it);
    it is present for `succeeded` and `cancelled`. `reason` is short and safe to show a client;
    it is present for `failed`.
    """

    status: Status
    payload: dict[str, Any] | None = None
    reason: str | None = None

    @classmethod
    def failed(cls, reason: str) -> SolveOutcome:
        return cls(status="failed", reason=reason)
