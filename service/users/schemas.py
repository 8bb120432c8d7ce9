"""What the users API returns: never the internal columns (tombstones, provider timestamps)."""

from __future__ import annotations

import uuid

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from service.core.pagination import Page
from service.core.timestamps import Timestamp


class OrgRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str | None
    role: str | None
    permissions: list[str]


class UserRead(BaseModel):
    """The signed-in caller: `roles` are global; `org` is the organisation the token acts in."""

    model_config = ConfigDict(from_attributes=True)

    # The gate's Principal calls it user_id.
    id: uuid.UUID = Field(validation_alias=AliasChoices("id", "user_id"))
    provider: str
    subject: str
    email: str | None
    roles: list[str]
    org: OrgRead | None
    created_at: Timestamp

    @field_validator("roles", mode="before")
    @classmethod
    def _sorted(cls, value: object) -> object:
        # A set on the Principal; a stable order on the wire.
        return sorted(value) if isinstance(value, set | frozenset) else value


class UserAdminRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    provider: str
    subject: str
    email: str | None
    display_name: str | None
    created_at: Timestamp
    deleted: bool


UserAdminPage = Page[UserAdminRead]
