"""JSON documents of tens of megabytes in and out, with no Python dict on the way out and one parse in.

In: the body is parsed once by orjson, to validate its shape; the body bytes themselves go to
PostgreSQL, which extracts the document member (`CAST(body AS jsonb) -> 'request'`). Nothing is
re-serialized, so numbers PostgreSQL can hold exactly (integers past 64 bits) are kept exactly.

Out: PostgreSQL renders the JSONB as text (`convert_to(doc::text, 'UTF8')`, bytes without a decode)
and the response sends those bytes after the small fields, never holding the document as objects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from service.errors import ValidationFailed

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class JsonBody(Generic[M]):
    """A validated request body.

    `fields` checks each member's type, but a member that is an object or array is hollow there
    (`{}` / `[]`): its content lives only in `raw`, which the repository hands to PostgreSQL.
    """

    fields: M
    raw: bytes

    def has(self, member: str) -> bool:
        return member in self.fields.model_fields_set


def _invalid(loc: Sequence[str | int], msg: str, kind: str) -> ValidationFailed:
    return ValidationFailed([{"loc": ["body", *loc], "msg": msg, "type": kind}])


def _hollow(value: Any) -> Any:
    if isinstance(value, dict):
        return {}
    if isinstance(value, list):
        return []
    return value


def parse_body(raw: bytes, model: type[M]) -> JsonBody[M]:
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson also refuses nesting past 1,024 levels and numbers beyond a double: 422, not 500.
        raise _invalid(
            [], "The body is not valid JSON (or nests deeper than 1,024 levels).", "json_invalid"
        ) from None
    if not isinstance(parsed, dict):
        raise _invalid([], "The body must be a JSON object.", "model_type")
    shape = {key: _hollow(value) for key, value in parsed.items()}
    del parsed  # the tree is only needed for its shape; free it before the database write
    try:
        fields = model.model_validate(shape)
    except ValidationError as exc:
        # Where and what only: the input may be large or sensitive, so it is never echoed.
        raise ValidationFailed(
            [
                {"loc": ["body", *error["loc"]], "msg": error["msg"], "type": error["type"]}
                for error in exc.errors(include_url=False, include_input=False)
            ]
        ) from None
    return JsonBody(fields=fields, raw=raw)


def json_body(model: type[M]) -> Callable[[Request], Awaitable[JsonBody[M]]]:
    """A dependency reading and validating the body as `model`, before any database work."""

    async def read(request: Request) -> JsonBody[M]:
        return parse_body(await request.body(), model)

    return read


class SplicedJSONResponse(Response):
    """`fields` as JSON, with one more member whose value is raw JSON text from PostgreSQL.

    The parts are sent one after another under one Content-Length, so a document of tens of
    megabytes is neither decoded, parsed, nor copied into a larger buffer on its way out.
    """

    media_type = "application/json"

    def __init__(
        self,
        fields: BaseModel,
        member: str,
        document: bytes | None,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        # The small fields go through the same serializer as every other response (pydantic), so
        # timestamps read alike everywhere. `{...}` becomes `{..., "member": <document>}`.
        head = fields.model_dump_json().encode()
        if head == b"{}":
            raise ValueError("a spliced response needs at least one field")
        self.parts = (head[:-1] + b"," + orjson.dumps(member) + b":", document or b"null", b"}")
        length = str(sum(len(part) for part in self.parts))
        super().__init__(None, status_code=status_code, headers={**(headers or {}), "content-length": length})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        last = len(self.parts) - 1
        for index, part in enumerate(self.parts):
            await send({"type": "http.response.body", "body": part, "more_body": index < last})
        if self.background is not None:
            await self.background()
