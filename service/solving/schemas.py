"""What the solving API accepts and returns, beside the planning schemas it extends."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from service.solving.outcome import MAX_SEED


class SolveOptions(BaseModel):
    """Strict like the request document: each option a JSON integer literal, never a string, a boolean
    or a whole number written as a float (10.0)."""

    model_config = ConfigDict(extra="forbid")

    time_limit_s: Annotated[
        StrictInt,
        Field(
            ge=1,
            description="Solver time in seconds, 1 – SOLVE_MAX_TIME_LIMIT_S (300 by default); an integer "
            'literal (`10`, not `10.0`, `"10"` or `true`)',
        ),
    ] = 10
    seed: Annotated[
        StrictInt,
        Field(
            ge=0,
            le=MAX_SEED,
            description="The solver's random seed (same seed and time, same result); an integer literal",
        ),
    ] = 1


class TicketRead(BaseModel):
    ticket: str
    expires_in: int
