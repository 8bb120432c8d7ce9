"""Request bodies read once, and JSON documents of tens of megabytes sent out without a Python tree.

In: `json_model(Model)` is the dependency for an ordinary body. `document_body(Model, member)` is
for a body that carries a document (a scenario's `request`, a solution's `payload`): the small
members are validated by `Model` (which does not contain the document), the document is only
checked to be a JSON object — on the event loop for a small body, in a worker process above
JSON_INLINE_MAX_BYTES, whose writes then take turns (JSON_LARGE_WRITES at once) — and the raw body
bytes go to PostgreSQL, which extracts the member
(`CAST(body AS jsonb) -> 'request'`) and stores it. Nothing is re-serialized, so numbers PostgreSQL
can hold exactly (integers past 64 bits) are kept exactly. A scenario's body is checked while
PostgreSQL writes it (service/core/document_writes.py), with the same checks.

Out: PostgreSQL renders the JSONB as text (`jsonb_send`'s bytes past its version byte: no decode)
and `SplicedJSONResponse` sends those bytes after the small fields, never holding the document as
objects. These are the one documented exception to responses built from their declared model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from service.core.context import state_of
from service.core.errors import ServiceUnavailable, ValidationFailed
from service.core.offload import Offload
from service.core.rendering import json_headers

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DocumentBody(Generic[M]):
    """A body's small members (validated) and, when it carries one, its document as raw body bytes."""

    fields: M
    raw: bytes
    has_document: bool
    # A large body's writes take turns (JSON_LARGE_WRITES at once): its slots; None for a small body.
    large_writes: asyncio.Semaphore | None = None
    wait_s: float = 0.0

    def write_slot(self) -> AbstractAsyncContextManager[None]:
        """Around the body's transaction (`async with body.write_slot(), planning.transaction()`):
        for a large body, one of JSON_LARGE_WRITES slots, taken before a database connection and
        given back after the commit.

        PostgreSQL parses (and stores) each document in its own backend: ten 5 MB writes at once
        took both cores, and the app's event loop waited for a turn (GET /health p99 ~60 ms, p50 x5).
        Four at a time (2 cores) kept the loop's p50 near idle and the writes' throughput (two cost a
        quarter of it: cores idle while PostgreSQL writes). The wait is bounded: a queue that does not
        move is a 503, not a hang.
        """
        return take_write_slot(self.large_writes, self.wait_s)


async def _acquire(slots: asyncio.Semaphore, wait_s: float, what: str, cause: str) -> None:
    try:
        async with asyncio.timeout(wait_s):
            await slots.acquire()
    except TimeoutError:
        raise ServiceUnavailable(
            f"Too many large documents are being {what}; try again shortly.",
            headers={"Retry-After": "1"},
            cause=cause,
        ) from None


@asynccontextmanager
async def take_write_slot(slots: asyncio.Semaphore | None, wait_s: float) -> AsyncIterator[None]:
    """One of `slots` (none to take: None) for the block, waiting at most `wait_s` (then 503)."""
    if slots is None:
        yield
        return
    await _acquire(slots, wait_s, "written", "large_writes_busy")
    try:
        yield
    finally:
        slots.release()


def _invalid(loc: Sequence[str | int], msg: str, kind: str) -> ValidationFailed:
    return ValidationFailed([{"loc": ["body", *loc], "msg": msg, "type": kind}])


def parse_object(raw: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson also refuses nesting past 1,024 levels and invalid UTF-8: 422, not 500.
        raise _invalid(
            [], "The body is not valid JSON (or nests deeper than 1,024 levels).", "json_invalid"
        ) from None
    if not isinstance(parsed, dict):
        raise _invalid([], "The body must be a JSON object.", "model_type")
    return parsed


def validate(model: type[M], members: Mapping[str, Any]) -> M:
    try:
        return model.model_validate(members)
    except ValidationError as exc:
        # Where and what only: the input may be large or sensitive, so it is never echoed.
        raise ValidationFailed(
            [
                {"loc": ["body", *error["loc"]], "msg": error["msg"], "type": error["type"]}
                for error in exc.errors(include_url=False, include_input=False)
            ]
        ) from None


# The checks below are functions of the raw bytes only, run on the event loop for a small body and
# in a worker process (service/core/offload.py) for a large one: the same code either way, so the same
# answers. Across the process boundary go the bytes, and back only the validated small members (or
# the ValidationFailed): the parsed tree of the document never leaves the worker.


def check_object(raw: bytes, model: type[M]) -> M:
    return validate(model, parse_object(raw))


def check_document(raw: bytes, model: type[M], member: str, required: bool) -> tuple[M, bool]:
    """(the small members validated as `model`, whether `member` was sent)."""
    members = parse_object(raw)
    present = member in members
    document = members.pop(member, None)
    if present and not isinstance(document, dict):
        raise _invalid([member], "Must be a JSON object.", "dict_type")
    if required and not present:
        raise _invalid([member], "Field required", "missing")
    del document  # only its type mattered; PostgreSQL parses and stores it from `raw`
    return validate(model, members), present


@dataclass(frozen=True, slots=True)
class BodyPolicy:
    """How bodies are checked and written: inline up to `inline_max_bytes` (JSON_INLINE_MAX_BYTES),
    else in `offload`; a large body's write takes one of `large_writes` slots, waiting at most
    `wait_s` (JSON_LARGE_WRITES, JSON_LARGE_WRITES_TIMEOUT)."""

    inline_max_bytes: int
    offload: Offload
    large_writes: asyncio.Semaphore
    wait_s: float
    large_transfers: asyncio.Semaphore

    async def run(
        self, size: int, work: Callable[..., T], *args: Any, inline_max_bytes: int | None = None
    ) -> T:
        """`work(*args)` on `size` bytes of input: inline up to the policy's size (or
        `inline_max_bytes`, for work dearer per byte than parsing JSON), else in the offload pool
        (work and arguments picklable)."""
        if size <= (self.inline_max_bytes if inline_max_bytes is None else inline_max_bytes):
            return work(*args)
        return await self.offload.run(work, *args)

    def write_slot(self, size: int) -> AbstractAsyncContextManager[None]:
        """DocumentBody.write_slot for a document of `size` bytes a route made itself (an import)."""
        return take_write_slot(self.large_writes if size > self.inline_max_bytes else None, self.wait_s)

    def transfer_slot(self, size: int) -> AbstractAsyncContextManager[None]:
        """Around `size` bytes of a document passing through the event loop (a body read, a document
        sent): above the inline size, one of JSON_LARGE_TRANSFERS slots, for TRANSFER_LEASE_S at most.

        Each such transfer is a stream of reads or writes of a few hundred kilobytes, each a turn of
        the loop; a hundred at once made every turn long (100 concurrent 5 MB GETs and POSTs: GET
        /health p99 over 200 ms). A few at a time keep the turns short, and cost no throughput
        while those few keep the loop busy. The client paces the transfer, so the slot is only
        leased: a client that sends or reads slowly costs the loop little, and must not keep the
        others waiting.
        """
        if size <= self.inline_max_bytes:
            return nullcontext()
        return self.large_transfer_slot()

    def large_transfer_slot(self) -> AbstractAsyncContextManager[None]:
        """`transfer_slot` for a document known to be large before its size is (one the database is
        about to render)."""
        return _leased_slot(self.large_transfers, self.wait_s)


# Long enough for tens of megabytes at the loop's pace (a 20 MB transfer takes well under a second).
TRANSFER_LEASE_S = 5.0


@asynccontextmanager
async def _leased_slot(slots: asyncio.Semaphore, wait_s: float) -> AsyncIterator[None]:
    await _acquire(slots, wait_s, "transferred", "large_transfers_busy")
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            slots.release()

    lease = asyncio.get_running_loop().call_later(TRANSFER_LEASE_S, release)
    try:
        yield
    finally:
        lease.cancel()
        release()


def body_policy(request: Request) -> BodyPolicy:
    policy: BodyPolicy = state_of(request).bodies
    return policy


async def _checked(policy: BodyPolicy, raw: bytes, check: Callable[..., T], *args: Any) -> T:
    """`check(raw, *args)`, inline up to the policy's size, else in the offload pool: parsing
    megabytes on the loop would stall every other request meanwhile (orjson holds the GIL)."""
    if len(raw) <= policy.inline_max_bytes:
        return check(raw, *args)
    return await policy.offload.run(check, raw, *args)


def json_model(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A dependency: the body validated as `model`, before any database work."""

    async def read(request: Request) -> M:
        return await _checked(body_policy(request), await request.body(), check_object, model)

    return read


def json_pointer(path: Sequence[Any]) -> str:
    """An RFC 6901 JSON pointer (`~` and `/` in a member's name escaped)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def pointed_json_model(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """`json_model(model)`, each validation error of the body also carrying a JSON pointer into it
    (`/url`, `/events/0`)."""
    read = json_model(model)

    async def checked(request: Request) -> M:
        try:
            return await read(request)
        except ValidationFailed as exc:
            errors = [
                {**error, "pointer": json_pointer(error["loc"][1:])}
                if error.get("loc", [])[:1] == ["body"]
                else error
                for error in exc.extra["errors"]
            ]
            raise ValidationFailed(errors, exc.detail) from None

    return checked


def document_body(
    model: type[M], member: str, *, required: bool
) -> Callable[[Request], Awaitable[DocumentBody[M]]]:
    """A dependency for a body carrying a document as `member` (a JSON object, never null); the
    route writes it inside `body.write_slot()`."""

    async def read(request: Request) -> DocumentBody[M]:
        policy = body_policy(request)
        raw = await request.body()
        fields, present = await _checked(policy, raw, check_document, model, member, required)
        large = len(raw) > policy.inline_max_bytes
        return DocumentBody(
            fields=fields,
            raw=raw,
            has_document=present,
            large_writes=policy.large_writes if large else None,
            wait_s=policy.wait_s,
        )

    return read


_JOIN_BELOW_BYTES = 64 * 1024


class SplicedJSONResponse(Response):
    """`fields` as JSON, with one more member whose value is raw JSON text from PostgreSQL.

    The parts are sent one after another under one Content-Length, so a document of tens of
    megabytes is neither decoded, parsed, nor copied into a larger buffer on its way out. Below
    _JOIN_BELOW_BYTES the copy is the cheaper part: the parts go out joined, as one message.
    """

    media_type = "application/json"

    def __init__(
        self,
        fields: BaseModel | bytes,
        member: str,
        document: bytes | Sequence[bytes] | None,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        sending: AbstractAsyncContextManager[object] | None = None,
    ) -> None:
        # `sending`: held while the parts are sent (a transfer slot), taken before the response starts.
        self.sending = sending
        # `fields`: a model, or its JSON object already rendered (service/core/rendering.py writes
        # a record as its model would). `{...}` becomes `{..., "member": <document>}`; a document in
        # pieces (as PostgreSQL sent it) is sent piece by piece, never joined.
        head = fields if isinstance(fields, bytes) else fields.model_dump_json().encode()
        if head == b"{}":
            raise ValueError("a spliced response needs at least one field")
        pieces = (document,) if isinstance(document, bytes) else tuple(document or ())
        parts = (head[:-1] + b"," + orjson.dumps(member) + b":", *(pieces or (b"null",)), b"}")
        # Each part is one more message through every middleware's send and one more transport
        # write, which costs more than copying a few kilobytes.
        size = sum(len(piece) for piece in pieces)
        self.parts = (b"".join(parts),) if size <= _JOIN_BELOW_BYTES else parts
        self.status_code = status_code
        self.background = None
        self.body = b""
        self.raw_headers = json_headers(sum(len(part) for part in self.parts), headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with self.sending or nullcontext():
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            last = len(self.parts) - 1
            for index, part in enumerate(self.parts):
                await send({"type": "http.response.body", "body": part, "more_body": index < last})
        if self.background is not None:
            await self.background()
