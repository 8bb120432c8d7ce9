"""JSON responses written from a route's records by one orjson call, with no model in between.

A route declares its response model (the OpenAPI document shows it) and returns `json_response` of
its records: a record is a dataclass with the model's members, in the model's order, so its JSON is
the model's. What a record holds but its body does not show (its version, sent as the ETag) is a
field whose name starts with `_`, which orjson leaves out. Timestamps come out as the models write
`Timestamp` — UTC with `Z`, the fraction left out when it is zero — since asyncpg reads timestamptz
in UTC; ids as their canonical text.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import orjson
from starlette.responses import Response

_OPTIONS = orjson.OPT_UTC_Z


def _text(value: object) -> str:
    # asyncpg's UUIDs are its own subclass of uuid.UUID, which orjson hands here.
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(value: object) -> bytes:
    return orjson.dumps(value, default=_text, option=_OPTIONS)


def json_response(
    value: object, *, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(dumps(value), status_code=status_code, headers=headers, media_type="application/json")
