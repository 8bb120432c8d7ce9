"""What the planning API accepts and returns.

`*Create` / `*Update` are the request bodies as documented (unknown fields refused). A body that
carries a document is validated in two parts (see documents.py): its small members by `*Fields`,
which do not contain the document, and the document only as "a JSON object" — PostgreSQL parses and
stores it. `*Summary` is a list item, never carrying a document; `*Read` adds the document.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from service.pagination import Page
from service.patterns import WHITESPACE
from service.timestamps import Timestamp

# No NUL: PostgreSQL's text cannot hold it, and it is never a meaningful part of a name. Surrounding
# whitespace is stripped, so a name needs one other character (said by the pattern, which is what the
# OpenAPI document shows; min_length alone would document "   " as valid).
Name = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=200,
        pattern=rf"^[^\x00]*[^\x00{WHITESPACE}][^\x00]*$",
    ),
]
JsonObject = dict[str, Any]
# What PostgreSQL's JSONB refuses, and so the routes answer with 422 (documents.py, the repository).
Document = Annotated[
    JsonObject,
    Field(
        description=(
            "Any JSON object, stored as JSONB: no `\\u0000` and no unpaired surrogate in a string or key, "
            "at most 1,024 levels deep. Numbers come back in JSONB's notation (`1e3` → `1000`)."
        )
    ),
]
# What a client may record; the solver also writes `cancelled`.
SolutionStatus = Literal["pending", "running", "succeeded", "failed"]


def _members_are_never_null(schema: dict[str, Any]) -> None:
    """Document what the routes enforce: an optional member may be left out, but never sent as null
    (a patch's null would otherwise read as "clear it", a document's null as "no document")."""
    for member in schema.get("properties", {}).values():
        alternatives = member.get("anyOf")
        if alternatives and {"type": "null"} in alternatives:
            rest = [alternative for alternative in member.pop("anyOf") if alternative != {"type": "null"}]
            if len(rest) == 1:
                member.update(rest[0])
            else:
                member["anyOf"] = rest
        if "default" in member and member["default"] is None:
            del member["default"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_members_are_never_null)


class _Patch(_Body):
    """Every member optional, but one that is sent must not be null: null never clears a field."""

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nulls = [name for name in self.model_fields_set if getattr(self, name) is None]
        if nulls:
            raise ValueError(f"{', '.join(sorted(nulls))} must not be null")
        return self


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class SessionCreate(_Body):
    name: Name


class SessionUpdate(_Patch):
    name: Name | None = None


class SessionRead(_Read):
    id: uuid.UUID
    name: str
    created_at: Timestamp
    updated_at: Timestamp


class ScenarioFields(_Body):
    name: Name


class ScenarioCreate(ScenarioFields):
    request: Document


class ScenarioPatchFields(_Patch):
    name: Name | None = None


class ScenarioUpdate(ScenarioPatchFields):
    request: Document | None = None


class ScenarioSummary(_Read):
    id: uuid.UUID
    session_id: uuid.UUID
    name: str
    created_at: Timestamp
    updated_at: Timestamp


class ScenarioRead(ScenarioSummary):
    request: JsonObject


class SolutionFields(_Body):
    status: SolutionStatus


class SolutionCreate(SolutionFields):
    payload: Document | None = None


class SolutionPatchFields(_Patch):
    status: SolutionStatus | None = None


class SolutionUpdate(SolutionPatchFields):
    payload: Document | None = None


class SolutionSummary(_Read):
    id: uuid.UUID
    scenario_id: uuid.UUID
    status: str
    created_at: Timestamp
    updated_at: Timestamp


class SolveProgress(BaseModel):
    elapsed_s: float | None
    iterations: int | None
    best_distance: int | None
    feasible: bool | None


class SolutionHead(SolutionSummary):
    """A solution without its payload: plus a solve's progress and, when it failed, why."""

    progress: SolveProgress | None = None
    reason: str | None = None


class SolutionRead(SolutionHead):
    payload: JsonObject | None


SessionPage = Page[SessionRead]
ScenarioPage = Page[ScenarioSummary]
SolutionPage = Page[SolutionSummary]
