"""JSON responses written from a route's records by one orjson call, with no model in between.

A route declares its response model (the OpenAPI document shows it) and returns `json_response` of
its records: a record is a dataclass with the model's members, in the model's order, so its JSON is
the model's. What a record holds but its body does not show (its version, sent as the ETag) is a
field whose name starts with `_`, which orjson leaves out. Timestamps come out as the models write
`Timestamp` — UTC with `Z`, the fraction left out when it is zero — since asyncpg reads timestamptz
in UTC; ids as their canonical text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import orjson
from asyncpg.pgproto.pgproto import UUID as DriverUUID
from starlette.responses import Response

_OPTIONS = orjson.OPT_UTC_Z

# orjson writes uuid.UUID itself, but not asyncpg's own subclass of it, which every id read from the
# database is: orjson hands those here. The driver's C-level `__str__` is their canonical text, and
# it raises TypeError for any other object, as orjson expects of a value JSON cannot hold. A Python
# function in its place costs a call per id, sixty on a page of twenty scenarios.
_text: Callable[[object], str] = DriverUUID.__str__


def dumps(value: object) -> bytes:
    return orjson.dumps(value, default=_text, option=_OPTIONS)


def json_headers(length: int, headers: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
    """The raw headers Response derives for a JSON body of `length` bytes with `headers`, in its
    order, written out: responses built on every request skip its general derivation."""
    ours = [(b"content-length", str(length).encode()), (b"content-type", b"application/json")]
    if headers:
        return [
            (key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in headers.items()
        ] + ours
    return ours


class _JSONResponse(Response):
    media_type = "application/json"

    def __init__(self, body: bytes, status_code: int, headers: Mapping[str, str] | None) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body
        self.raw_headers = json_headers(len(body), headers)


def json_response(
    value: object, *, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return _JSONResponse(dumps(value), status_code, headers)
