"""Shapes every domain's bodies share: names, JSON documents, and the body, patch and read bases.

A `Body` refuses unknown members and documents that its optional members may be left out but never
sent as null; a `Patch` refuses a member sent as null (null never clears a field); a `Read` is built
from a record's attributes.
"""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from service.core.patterns import WHITESPACE

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
DOCUMENT = (
    "Any JSON object, stored as JSONB: no `\\u0000` and no unpaired surrogate in a string or key, "
    "at most 1,024 levels deep. Numbers come back in JSONB's notation (`1e3` → `1000`)."
)
# What PostgreSQL's JSONB refuses, and so the routes answer with 422 (service/core/bodies.py, the repository).
Document = Annotated[JsonObject, Field(description=DOCUMENT)]


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


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_members_are_never_null)


class Patch(Body):
    """Every member optional, but one that is sent must not be null: null never clears a field."""

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nulls = [name for name in self.model_fields_set if getattr(self, name) is None]
        if nulls:
            raise ValueError(f"{', '.join(sorted(nulls))} must not be null")
        return self


class Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)
