"""Timestamps on the wire: one format everywhere, RFC 3339 in UTC with microseconds and `Z`.

pydantic alone writes `Z` for UTC but drops the fraction when it is zero (`…:05Z` beside
`…:05.120000Z`), and would pass any other offset through; a client parsing one fixed format would
fail on the odd row. `Timestamp` fixes the shape, and the OpenAPI document states it as a pattern,
so the conformance test checks every timestamp the service sends.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import PlainSerializer, WithJsonSchema

PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"


def format_timestamp(value: datetime) -> str:
    # A list page formats forty of these: the common case (asyncpg's UTC) is one isoformat call.
    if value.tzinfo is not UTC:
        # timestamptz columns come back aware; a naive value can only be UTC in this service.
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")[:-6] + "Z"  # "+00:00" → "Z"


Timestamp = Annotated[
    datetime,
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": PATTERN,
            "examples": ["2026-12-02T09:30:00.000000Z"],
        },
        mode="serialization",
    ),
]
