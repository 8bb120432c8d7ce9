"""A body carrying a large document, written while it is checked: the database's parse is the one
on the request's path.

PostgreSQL parses the raw body as JSONB to store its document; that parse, not ours, is what the
write waits for. Our own check of the body (`bodies.check_document`: a JSON object, the document a
JSON object, the small members valid, and what orjson refuses beside PostgreSQL — nesting past
1,024 levels, numbers beyond a double) still runs, in a worker process, at the same time as the
statement: the statement takes the small members from its own parse of the body, and the check has
ended before the transaction commits. An invalid body writes nothing, and answers exactly as when it
was checked first: the check's 422 wins over anything the write raised (a 404, 403, 412 or
PostgreSQL's own 422).

A small body (up to JSON_INLINE_MAX_BYTES) is checked on the event loop before anything, as any
other body: there is nothing to overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi import Request
from pydantic import BaseModel

from service.core.bodies import body_policy, check_document, take_write_slot

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")


def _retrieve(future: asyncio.Future[Any]) -> None:
    # A request that ends before awaiting its check (a dependency after it failed, the client left)
    # must not leave "exception was never retrieved" in the log.
    if not future.cancelled():
        future.exception()


@dataclass(frozen=True, slots=True)
class DocumentWrite(Generic[M]):
    """The raw body (for PostgreSQL, which stores the document from it) and its check, running."""

    raw: bytes
    check: asyncio.Future[tuple[M, bool]]
    # A large body's writes take turns (JSON_LARGE_WRITES at once): its slots; None for a small body.
    large_writes: asyncio.Semaphore | None
    wait_s: float

    async def fields(self) -> M:
        """The small members, validated (raises the body's ValidationFailed)."""
        fields, _ = await self.check
        return fields

    @asynccontextmanager
    async def written(self, transaction: Callable[[], AbstractAsyncContextManager[R]]) -> AsyncIterator[R]:
        """`transaction()` for writing the body, taken inside a large body's write slot (one of
        JSON_LARGE_WRITES); the body's check ends before the commit, and its error wins over any other."""
        try:
            async with take_write_slot(self.large_writes, self.wait_s), transaction() as repo:
                yield repo
                await self.check  # before the commit: an invalid body writes nothing
        except Exception:
            await self.check  # the body's own 422 first, as if it had been checked before anything
            raise


def document_write(
    model: type[M], member: str, *, required: bool
) -> Callable[[Request], Awaitable[DocumentWrite[M]]]:
    """A dependency for a body carrying a document as `member` (a JSON object, never null); the
    route writes it inside `body.written(scope.writing)`, taking the small members from PostgreSQL's
    parse, and then reads `await body.fields()` to correct what the model normalises (a name's
    surrounding whitespace). A large body is read in one of JSON_LARGE_TRANSFERS' turns."""

    async def read(request: Request) -> DocumentWrite[M]:
        policy = body_policy(request)
        declared = request.headers.get("content-length")  # the body-limit middleware checked it
        async with policy.transfer_slot(int(declared) if declared else policy.inline_max_bytes + 1):
            raw = await request.body()
        large = len(raw) > policy.inline_max_bytes
        check: asyncio.Future[tuple[M, bool]]
        if large:
            check = asyncio.ensure_future(policy.offload.run(check_document, raw, model, member, required))
            check.add_done_callback(_retrieve)
        else:
            check = asyncio.get_running_loop().create_future()
            check.set_result(check_document(raw, model, member, required))  # raises for an invalid body
        return DocumentWrite(raw, check, policy.large_writes if large else None, policy.wait_s)

    return read
