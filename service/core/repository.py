"""The base of every repository bound to its caller: it cannot be built without its owner.

The owner filter is written once: every statement of a bound repository takes the owner as `$1`
(`_fetch` and `_fetchrow` prepend it) and filters or inserts `<owner column> = $1` — `workspace_id`
for planning and solving (`WorkspaceRepository`, bound to a workspace and the member acting in it),
`user_id` for a user's own tables. Row-level security binds underneath, so a statement that forgot
the filter would still see only the owner's rows.

A repository runs in the request's transaction (`Database.as_member`) and never commits. Missing and
foreign rows raise the same NotFound, so no route can tell them apart. Writes guarded by If-Match
(`_versioned`) and documents stored by PostgreSQL from the raw body (`MEMBER`) are shared here too.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Generic, TypeVar

import asyncpg

from service.core.db import Connection, Database
from service.core.errors import AppError, Forbidden, NotFound, PreconditionFailed, ValidationFailed
from service.core.pagination import Cursor

# SQLSTATEs PostgreSQL raises for a document it cannot store: the client's input, so 422, never 500.
# Only statements that carry a client's document map them; anywhere else such an error is our bug.
# The server's own message is not passed on: it may quote the document.
_DOCUMENT_ERRORS = {
    "22P02": "The document is not valid JSON.",
    "22P05": "The document contains \\u0000 or a character PostgreSQL cannot store.",
    "22021": "The document contains a character PostgreSQL cannot store.",
    "22003": "A number in the document is out of the range PostgreSQL can store.",
    "54000": "The document is too large to store.",
    "54001": "The document nests too deeply to store.",
}
_FOREIGN_KEY_VIOLATION = "23503"
_INSUFFICIENT_PRIVILEGE = "42501"

# The document member of a body, parsed by PostgreSQL and only there.
MEMBER = "(convert_from({param}::bytea, 'UTF8')::jsonb -> '{member}')"
# PostgreSQL's text of a JSONB value, as bytes: no decode to str and encode back in Python.
# jsonb_send is that text behind one version byte, rendered once, without the copy into a text value
# and the encoding check that convert_to of `::text` cost (a tenth of a 20 MB read); a large read cuts
# its pieces from byte SENT_JSONB_TEXT_FROM on, so nothing copies the whole again. Its text is in the
# session's client_encoding, which asyncpg sets to UTF-8 on every connection (and PgBouncer re-applies
# to each server connection it lends): a session set to another encoding would send other bytes.
SENT_JSONB = "jsonb_send({document})"
SENT_JSONB_TEXT_FROM = 2
AS_BYTES = f"substring({SENT_JSONB} FROM {SENT_JSONB_TEXT_FROM})"
_NEWEST_FIRST = "ORDER BY created_at DESC, id DESC"


# A record's `created_by: uuid.UUID = field(metadata=CREATED_BY)`: read from the row's `user_id` (who
# created it; the workspace owns it).
CREATED_BY = {"column": "user_id"}
# A `Versioned` record's `_version: int = field(metadata=VERSION)`: the row's version.
VERSION = {"column": "version"}


class Versioned:
    """A record whose version is its ETag and never part of its body: the field is `_version`, which
    the JSON of a record leaves out (service/core/rendering.py)."""

    _version: int

    @property
    def version(self) -> int:
        return self._version


def columns(record: type) -> str:
    """A record's columns, in the order of its fields: a row selected with them builds the record
    positionally (`Record(*row)`), a seventh of the cost of `Record(**row)` per row."""
    return ", ".join(
        f"{f.metadata['column']} AS {f.name}" if "column" in f.metadata else f.name for f in fields(record)
    )


def page(base: str, cursor: Cursor | None, next_param: int) -> tuple[str, tuple[Any, ...]]:
    """Newest first after `cursor` (one index range scan); LIMIT is the next parameter after it."""
    if cursor is None:
        return f"{base} {_NEWEST_FIRST} LIMIT ${next_param}", ()
    keyset = f"AND (created_at, id) < (${next_param}, ${next_param + 1})"
    return f"{base} {keyset} {_NEWEST_FIRST} LIMIT ${next_param + 2}", (cursor.created_at, cursor.id)


def _client_error(exc: asyncpg.PostgresError, *, document: bool) -> AppError | None:
    sqlstate = exc.sqlstate or ""
    if sqlstate == _FOREIGN_KEY_VIOLATION:
        return NotFound()  # the parent went away between the lookup and the insert
    if sqlstate == _INSUFFICIENT_PRIVILEGE:
        # A row-level security policy refused a write: the caller's role was narrowed (or the
        # membership removed) after this instance last read it, and the policy reads it fresh.
        return Forbidden("Your role in this workspace does not allow this change.")
    if document and sqlstate[:2] in {"22", "54"}:
        message = _DOCUMENT_ERRORS.get(sqlstate, "The document cannot be stored.")
        return ValidationFailed([{"loc": ["body"], "msg": message, "type": "document_invalid"}])
    return None


class OwnedRepository:
    """Rows of one owner, `owner`, in one transaction: the value of `OWNER_COLUMN` in every row."""

    # The column every statement filters on `= $1`: a user's own rows (outbound webhooks), or a
    # workspace's (planning and solving: `WorkspaceRepository`).
    OWNER_COLUMN: ClassVar[str] = "user_id"

    def __init__(self, conn: Connection, *, owner: uuid.UUID) -> None:
        if not isinstance(owner, uuid.UUID):
            raise TypeError(f"a {type(self).__name__} is bound to its caller: owner must be a user id")
        self._conn = conn
        self._owner = owner

    @property
    def owner(self) -> uuid.UUID:
        return self._owner

    # -- execution: the owner is always $1 ---------------------------------------------------

    async def _fetch(self, sql: str, *args: Any, document: bool = False) -> list[asyncpg.Record]:
        """`document`: the statement carries a client's document, whose data errors are a 422."""
        try:
            return await self._conn.fetch(sql, self._owner, *args)
        except asyncpg.PostgresError as exc:
            error = _client_error(exc, document=document)
            if error is None:
                raise
            raise error from None

    async def _fetchrow(self, sql: str, *args: Any, document: bool = False) -> asyncpg.Record:
        """The first row; NotFound when there is none."""
        rows = await self._fetch(sql, *args, document=document)
        if not rows:
            raise NotFound()
        return rows[0]

    async def _fetchrow_or_none(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self._conn.fetchrow(sql, self._owner, *args)

    async def _children(
        self, sql: str, parent_table: str, parent_id: uuid.UUID, limit: int, cursor: Cursor | None
    ) -> list[asyncpg.Record]:
        """A page of `sql` (`$2` names the parent), newest first, limit + 1 rows (the extra one says a
        next page exists); NotFound when the parent is not the owner's, never an empty page."""
        sql, args = page(sql, cursor, 3)
        rows = await self._fetch(sql, parent_id, *args, limit + 1)
        if not rows and not await self._exists(parent_table, parent_id):
            raise NotFound()
        return rows

    async def _exists(self, table: str, item_id: uuid.UUID) -> bool:
        return bool(
            await self._fetch(f"SELECT 1 FROM {table} WHERE {self.OWNER_COLUMN} = $1 AND id = $2", item_id)
        )

    async def _versioned(
        self,
        table: str,
        sql: str,
        item_id: uuid.UUID,
        expected: Collection[int] | None,
        *args: Any,
        document: bool,
    ) -> asyncpg.Record:
        """One atomic write whose WHERE ends with the If-Match guard; a stale version matches no row,
        so nothing is written. `sql` takes ($1 owner, $2 id, $3 versions or NULL, then `args`)."""
        rows = await self._fetch(sql, item_id, self.versions(expected), *args, document=document)
        if rows:
            return rows[0]
        if expected is not None and await self._exists(table, item_id):
            raise PreconditionFailed()
        raise NotFound()

    @staticmethod
    def versions(expected: Collection[int] | None) -> str | None:
        """IF_MATCH's `$3`: None (any version will do) or the allowed versions, comma-joined."""
        return ",".join(map(str, sorted(expected))) if expected is not None else None

    # `$3` is NULL (any version) or the versions If-Match allows, as one comma-joined text parameter:
    # one parameter however many versions, and no array type for asyncpg to introspect (a round trip
    # and a session-level SET on every new connection, which a transaction-mode pooler would leak).
    IF_MATCH = "($3::text IS NULL OR version = ANY(string_to_array($3::text, ',')::int[]))"

    async def _delete(self, table: str, item_id: uuid.UUID, expected: Collection[int] | None) -> None:
        sql = (
            f"DELETE FROM {table} WHERE {self.OWNER_COLUMN} = $1 AND id = $2 AND {self.IF_MATCH} RETURNING id"
        )
        await self._versioned(table, sql, item_id, expected, document=False)


class WorkspaceRepository(OwnedRepository):
    """Rows of one workspace, in one transaction of one of its members (`user`): every statement
    filters `workspace_id = $1`, and an insert names `user` as the row's creator."""

    OWNER_COLUMN = "workspace_id"

    def __init__(self, conn: Connection, *, workspace: uuid.UUID, user: uuid.UUID) -> None:
        super().__init__(conn, owner=workspace)
        if not isinstance(user, uuid.UUID):
            raise TypeError(f"a {type(self).__name__} is bound to its caller: user must be a user id")
        self._user = user

    @property
    def workspace(self) -> uuid.UUID:
        return self._owner

    @property
    def user(self) -> uuid.UUID:
        return self._user


R = TypeVar("R", bound=OwnedRepository)
W = TypeVar("W", bound=WorkspaceRepository)


@dataclass(frozen=True, slots=True)
class OwnerScope(Generic[R]):
    """A caller's rows, reached one transaction at a time: what a route's dependency hands it."""

    db: Database
    owner: uuid.UUID
    repository: type[R]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[R]:
        """The request's transaction: as the app role, with the caller's id set in the same round
        trip. A route's work runs inside the block, so it commits before the response is sent and a
        client never sees a 201 for a write that then fails to commit."""
        async with self.db.as_user(self.owner) as conn:
            yield self.repository(conn, owner=self.owner)


# A viewer's write: refused by the route before any statement (and by row-level security beneath).
READ_ONLY_DETAIL = "Your role in this workspace allows reading only."


@dataclass(frozen=True, slots=True)
class WorkspaceScope(Generic[W]):
    """A member's view of one workspace, reached one transaction at a time: what a planning or
    solving route's dependency hands it. `transaction()` reads; `writing()` also writes, and is
    refused (403) for a member whose role only reads."""

    db: Database
    workspace: uuid.UUID
    user: uuid.UUID
    may_write: bool
    repository: type[W]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[W]:
        """The request's transaction: as the app role, with the workspace and the caller set in the
        same round trip. A route's work runs inside the block, so it commits before the response is
        sent and a client never sees a 201 for a write that then fails to commit."""
        async with self.db.as_member(self.workspace, self.user) as conn:
            yield self.repository(conn, workspace=self.workspace, user=self.user)

    def writing(self) -> AbstractAsyncContextManager[W]:
        """`transaction()` for a route that changes something (create, edit, delete, solve, cancel)."""
        if not self.may_write:
            raise Forbidden(READ_ONLY_DETAIL)
        return self.transaction()
