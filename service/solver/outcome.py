"""A solution's status, what a solve reports while it runs (`Progress`) and when it ends
(`SolveOutcome`).

`SolutionStatus` is the one list of statuses: the `solutions` table's CHECK, its statements, the API's
schemas and the worker all read it. A run's outcome is one of the final three. The dataclasses are
plain and frozen: they cross a process boundary by pickle and carry no behaviour.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field


class SolutionStatus(enum.StrEnum):
    """`pending` → `running` → `succeeded` | `failed` | `cancelled` for a solve; a solution a client
    records is `succeeded` or `failed`."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        """Pending or running: a solve owns the solution until it ends."""
        return self in ACTIVE_STATUSES


ACTIVE_STATUSES = frozenset({SolutionStatus.PENDING, SolutionStatus.RUNNING})
FINAL_STATUSES = frozenset(set(SolutionStatus) - ACTIVE_STATUSES)


def sql_list(statuses: frozenset[SolutionStatus]) -> str:
    """`('pending', 'running')`: statuses for an SQL `IN`, in the enum's order (a stable text, as an
    index's predicate must be)."""
    return "(" + ", ".join(f"'{status}'" for status in SolutionStatus if status in statuses) + ")"


# The reason of a solve cancelled before any solution existed (it then ends `failed`).
CANCELLED_EARLY = "cancelled before a solution was found"
# 32 bits: PyVRP's random number generator takes a 32-bit seed.
MAX_SEED = 2**32 - 1


@dataclass(frozen=True, slots=True)
class Progress:
    """A running solve's latest progress: from the child process to the row, the API and the event
    stream, this one shape."""

    elapsed_s: Annotated[float, Field(description="Seconds since the solve started.")]
    iterations: Annotated[int, Field(description="Search iterations so far.")]
    best_distance: Annotated[
        int | None, Field(description="Metres: the best feasible solution's; null before there is one.")
    ]
    feasible: Annotated[bool, Field(description="Whether a feasible solution has been found.")]


@dataclass(frozen=True, slots=True)
class SolveOutcome:
    """`payload` is the solution payload (solver.plan.SolutionPayload) without `scenario_version` (the caller adds it);
    it is present for `succeeded` and `cancelled`. `reason` is short and safe to show a client;
    it is present for `failed`. `ran_ns` is when the solver process started and ended (wall clock,
    nanoseconds), as the process itself measured; absent from an outcome its parent made up (the
    process died, was killed, or never started).
    """

    status: SolutionStatus
    payload: dict[str, Any] | None = None
    reason: str | None = None
    ran_ns: tuple[int, int] | None = field(default=None, compare=False)

    @classmethod
    def failed(cls, reason: str) -> SolveOutcome:
        return cls(status=SolutionStatus.FAILED, reason=reason)


def final_progress(payload: dict[str, Any]) -> Progress:
    """The progress a finished solve shows: its payload's own figures."""
    feasible = bool(payload["feasible"])
    return Progress(
        elapsed_s=payload["solver"]["runtime_s"],
        iterations=payload["solver"]["iterations"],
        best_distance=payload["distance"] if feasible else None,
        feasible=feasible,
    )
