"""What the planning API accepts and returns.

`*Create` / `*Update` are the request bodies (unknown fields refused); `*Summary` is a list item,
never carrying a JSON document; `*Read` adds the document. The routes send a document as
PostgreSQL's own text of the JSONB, so `*Read` is the documented shape rather than the serializer.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

from service.planning.models import SOLUTION_STATUSES

# No NUL: PostgreSQL's text cannot hold it, and it is never a meaningful part of a name.
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00]*$")
]
# A JSON object. In a request body its content is not validated here: the routes hand the raw body
# to PostgreSQL, which parses it once (see documents.py); these models check members' types only.
JsonObject = dict[str, Any]
SolutionStatus = Literal["pending", "running", "succeeded", "failed"]
assert set(SolutionStatus.__args__) == set(SOLUTION_STATUSES)  # type: ignore[attr-defined]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Patch(_Body):
    """Every member optional, but one that is sent must not be null: null never clears a field."""

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nulls = [name for name in self.model_fields_set if getattr(self, name) is None]
        if nulls:
            raise ValueError(f"{', '.join(sorted(nulls))} must not be null")
        return self


class SessionCreate(_Body):
    name: Name


class SessionUpdate(_Patch):
    name: Name | None = None


class SessionRead(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime
    updated_at: datetime


class ScenarioCreate(_Body):
    name: Name
    request: JsonObject


class ScenarioUpdate(_Patch):
    name: Name | None = None
    request: JsonObject | None = None


class ScenarioSummary(BaseModel):
    id: uuid.UUID
    session_id: uuid.UUID
    name: str
    created_at: datetime
    updated_at: datetime


class ScenarioRead(ScenarioSummary):
    request: JsonObject


class SolutionCreate(_Body):
    status: SolutionStatus
    payload: JsonObject | None = None

    @model_validator(mode="after")
    def _payload_not_null(self) -> Self:
        # Omitted means "no payload yet"; an explicit null is a client mistake worth telling.
        if "payload" in self.model_fields_set and self.payload is None:
            raise ValueError("payload must be a JSON object when given")
        return self


class SolutionUpdate(_Patch):
    status: SolutionStatus | None = None
    payload: JsonObject | None = None


class SolutionSummary(BaseModel):
    id: uuid.UUID
    scenario_id: uuid.UUID
    status: str
    created_at: datetime
    updated_at: datetime


class SolutionRead(SolutionSummary):
    payload: JsonObject | None
