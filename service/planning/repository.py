"""Every planning query, bound to its caller: a repository cannot be built without its owner.

The owner filter is written once: every statement here takes the owner as `$1` (`_fetch` and
`_fetchrow` prepend it) and filters or inserts `user_id = $1`. Row-level security (migration 0002)
binds underneath, so a statement that forgot the filter would still see only the caller's rows.

A repository runs in the request's transaction (`Database.as_user`) and never commits. Missing and
foreign rows raise the same NotFound, so no route can tell them apart.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from service.db import Connection, new_id
from service.errors import AppError, NotFound, PreconditionFailed, ValidationFailed
from service.pagination import Cursor

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

# The document member of a body, parsed by PostgreSQL and only there.
_MEMBER = "(convert_from({param}::bytea, 'UTF8')::jsonb -> '{member}')"
# NULL until a PATCH changes it: the scenario's request is then its original (migration 0004).
_CURRENT_REQUEST = "COALESCE(request, original_request)"
# PostgreSQL's text of a JSONB value, as bytes: no decode to str and encode back in Python.
_AS_BYTES = "convert_to(({document})::text, 'UTF8')"


@dataclass(slots=True)
class SessionRecord:
    id: uuid.UUID
    name: str
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class ScenarioRecord:
    id: uuid.UUID
    session_id: uuid.UUID
    name: str
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class SolutionRecord:
    id: uuid.UUID
    scenario_id: uuid.UUID
    status: str
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class SolutionHeadRecord(SolutionRecord):
    """A solution with its solve's latest progress and, when it failed, why (None when recorded)."""

    progress: dict[str, Any] | None
    reason: str | None


def columns(record: type) -> str:
    """A record's columns, in the order of its fields: a row selected with them builds the record
    positionally (`Record(*row)`), a seventh of the cost of `Record(**row)` per row."""
    return ", ".join(field.name for field in fields(record))


_SESSION = columns(SessionRecord)
_SCENARIO = columns(ScenarioRecord)
_SOLUTION = columns(SolutionRecord)
_NEWEST_FIRST = "ORDER BY created_at DESC, id DESC"


def _client_error(exc: asyncpg.PostgresError, *, document: bool) -> AppError | None:
    sqlstate = exc.sqlstate or ""
    if sqlstate == _FOREIGN_KEY_VIOLATION:
        return NotFound()  # the parent went away between the lookup and the insert
    if document and sqlstate[:2] in {"22", "54"}:
        message = _DOCUMENT_ERRORS.get(sqlstate, "The document cannot be stored.")
        return ValidationFailed([{"loc": ["body"], "msg": message, "type": "document_invalid"}])
    return None


def _page(base: str, cursor: Cursor | None, next_param: int) -> tuple[str, tuple[Any, ...]]:
    """Newest first after `cursor` (one index range scan); LIMIT is the next parameter after it."""
    if cursor is None:
        return f"{base} {_NEWEST_FIRST} LIMIT ${next_param}", ()
    keyset = f"AND (created_at, id) < (${next_param}, ${next_param + 1})"
    return f"{base} {keyset} {_NEWEST_FIRST} LIMIT ${next_param + 2}", (cursor.created_at, cursor.id)


async def erase_owner(conn: Connection, user_id: uuid.UUID) -> None:
    """Erase everything `user_id` planned, in the caller's (privileged) transaction: the identity
    service's tombstone runs this. Scenarios and solutions follow by ON DELETE CASCADE."""
    # FORCEd row-level security binds the tables' owner too: admit this user's rows first.
    await conn.execute("SELECT set_config('app.user_id', $1, true)", str(user_id))
    await conn.execute("DELETE FROM sessions WHERE user_id = $1", user_id)


class PlanningRepository:
    """Sessions, scenarios and solutions of one user, `owner`."""

    def __init__(self, conn: Connection, *, owner: uuid.UUID) -> None:
        if not isinstance(owner, uuid.UUID):
            raise TypeError("a PlanningRepository is bound to its caller: owner must be a user id")
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
        rows = await self._fetch(sql, *args, document=document)
        if not rows:
            raise NotFound()
        return rows[0]

    async def _exists(self, table: str, item_id: uuid.UUID) -> bool:
        return bool(await self._fetch(f"SELECT 1 FROM {table} WHERE user_id = $1 AND id = $2", item_id))

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
        versions = ",".join(map(str, sorted(expected))) if expected is not None else None
        rows = await self._fetch(sql, item_id, versions, *args, document=document)
        if rows:
            return rows[0]
        if expected is not None and await self._exists(table, item_id):
            raise PreconditionFailed()
        raise NotFound()

    # `$3` is NULL (any version) or the versions If-Match allows, as one comma-joined text parameter:
    # one parameter however many versions, and no array type for asyncpg to introspect (a round trip
    # and a session-level SET on every new connection, which a transaction-mode pooler would leak).
    _IF_MATCH = "($3::text IS NULL OR version = ANY(string_to_array($3::text, ',')::int[]))"

    async def _delete(self, table: str, item_id: uuid.UUID, expected: Collection[int] | None) -> None:
        sql = f"DELETE FROM {table} WHERE user_id = $1 AND id = $2 AND {self._IF_MATCH} RETURNING id"
        await self._versioned(table, sql, item_id, expected, document=False)

    # -- sessions -------------------------------------------------------------------------------

    async def create_session(self, name: str) -> SessionRecord:
        row = await self._fetchrow(
            f"INSERT INTO sessions (id, user_id, name) VALUES ($2, $1, $3) RETURNING {_SESSION}",
            new_id(),
            name,
        )
        return SessionRecord(*row)

    async def list_sessions(self, limit: int, cursor: Cursor | None) -> list[SessionRecord]:
        sql, args = _page(f"SELECT {_SESSION} FROM sessions WHERE user_id = $1", cursor, 2)
        return [SessionRecord(*row) for row in await self._fetch(sql, *args, limit + 1)]

    async def get_session(self, session_id: uuid.UUID) -> SessionRecord:
        sql = f"SELECT {_SESSION} FROM sessions WHERE user_id = $1 AND id = $2"
        return SessionRecord(*await self._fetchrow(sql, session_id))

    async def rename_session(
        self, session_id: uuid.UUID, name: str | None, expected: Collection[int] | None
    ) -> SessionRecord:
        sql = f"""
            UPDATE sessions SET name = COALESCE($4, name), version = version + 1, updated_at = now()
            WHERE user_id = $1 AND id = $2 AND {self._IF_MATCH} RETURNING {_SESSION}
        """
        return SessionRecord(
            *await self._versioned("sessions", sql, session_id, expected, name, document=False)
        )

    async def delete_session(self, session_id: uuid.UUID, expected: Collection[int] | None) -> None:
        """Its scenarios and solutions go with it (ON DELETE CASCADE)."""
        await self._delete("sessions", session_id, expected)

    # -- scenarios ------------------------------------------------------------------------------

    async def create_scenario(self, session_id: uuid.UUID, name: str, raw_body: bytes) -> ScenarioRecord:
        """Inserts under the session only if the caller owns it: one statement, nothing written otherwise."""
        sql = f"""
            INSERT INTO scenarios (id, user_id, session_id, name, original_request)
            SELECT $3, s.user_id, s.id, $4, {_MEMBER.format(param="$5", member="request")}
            FROM sessions s WHERE s.user_id = $1 AND s.id = $2
            RETURNING {_SCENARIO}
        """
        return ScenarioRecord(*await self._fetchrow(sql, session_id, new_id(), name, raw_body, document=True))

    async def list_scenarios(
        self, session_id: uuid.UUID, limit: int, cursor: Cursor | None
    ) -> list[ScenarioRecord]:
        sql, args = _page(
            f"SELECT {_SCENARIO} FROM scenarios WHERE user_id = $1 AND session_id = $2", cursor, 3
        )
        rows = [ScenarioRecord(*row) for row in await self._fetch(sql, session_id, *args, limit + 1)]
        if not rows and not await self._exists("sessions", session_id):
            raise NotFound()
        return rows

    async def get_scenario(self, scenario_id: uuid.UUID) -> tuple[ScenarioRecord, bytes]:
        """The scenario and its current request as JSON text."""
        document = _AS_BYTES.format(document=_CURRENT_REQUEST)
        sql = f"SELECT {_SCENARIO}, {document} AS document FROM scenarios WHERE user_id = $1 AND id = $2"
        values = dict(await self._fetchrow(sql, scenario_id))
        text: bytes = values.pop("document")
        return ScenarioRecord(**values), text

    async def get_original_request(self, scenario_id: uuid.UUID) -> bytes:
        document = _AS_BYTES.format(document="original_request")
        sql = f"SELECT {document} AS document FROM scenarios WHERE user_id = $1 AND id = $2"
        text: bytes = (await self._fetchrow(sql, scenario_id))["document"]
        return text

    async def update_scenario(
        self,
        scenario_id: uuid.UUID,
        *,
        name: str | None,
        raw_body: bytes | None,
        expected: Collection[int] | None,
    ) -> ScenarioRecord:
        """`raw_body`, when given, carries the new request as its `request` member."""
        # No body (a rename only): the member is NULL and the request stays as it is.
        request = f"COALESCE({_MEMBER.format(param='$5', member='request')}, request)"
        sql = f"""
            UPDATE scenarios
            SET name = COALESCE($4, name), request = {request}, version = version + 1, updated_at = now()
            WHERE user_id = $1 AND id = $2 AND {self._IF_MATCH} RETURNING {_SCENARIO}
        """
        row = await self._versioned(
            "scenarios", sql, scenario_id, expected, name, raw_body, document=raw_body is not None
        )
        return ScenarioRecord(*row)

    async def reset_scenario(
        self, scenario_id: uuid.UUID, expected: Collection[int] | None
    ) -> ScenarioRecord:
        """The request becomes the original again: NULL reads as the original, no copy is made."""
        sql = f"""
            UPDATE scenarios SET request = NULL, version = version + 1, updated_at = now()
            WHERE user_id = $1 AND id = $2 AND {self._IF_MATCH} RETURNING {_SCENARIO}
        """
        return ScenarioRecord(*await self._versioned("scenarios", sql, scenario_id, expected, document=False))

    async def delete_scenario(self, scenario_id: uuid.UUID, expected: Collection[int] | None) -> None:
        """Its solutions go with it (ON DELETE CASCADE)."""
        await self._delete("scenarios", scenario_id, expected)

    # -- solutions ------------------------------------------------------------------------------

    async def create_solution(
        self, scenario_id: uuid.UUID, status: str, raw_body: bytes | None
    ) -> SolutionRecord:
        """`raw_body`, when given, carries the payload as its `payload` member."""
        payload = _MEMBER.format(param="$5", member="payload")  # NULL without a body
        sql = f"""
            INSERT INTO solutions (id, user_id, scenario_id, status, payload)
            SELECT $3, c.user_id, c.id, $4, {payload}
            FROM scenarios c WHERE c.user_id = $1 AND c.id = $2
            RETURNING {_SOLUTION}
        """
        row = await self._fetchrow(
            sql, scenario_id, new_id(), status, raw_body, document=raw_body is not None
        )
        return SolutionRecord(*row)

    async def list_solutions(
        self, scenario_id: uuid.UUID, limit: int, cursor: Cursor | None
    ) -> list[SolutionRecord]:
        sql, args = _page(
            f"SELECT {_SOLUTION} FROM solutions WHERE user_id = $1 AND scenario_id = $2", cursor, 3
        )
        rows = [SolutionRecord(*row) for row in await self._fetch(sql, scenario_id, *args, limit + 1)]
        if not rows and not await self._exists("scenarios", scenario_id):
            raise NotFound()
        return rows

    async def get_solution(self, solution_id: uuid.UUID) -> tuple[SolutionHeadRecord, bytes | None]:
        """The solution with its solve state, and its payload as JSON text (None when it has none)."""
        document = _AS_BYTES.format(document="payload")
        sql = (
            f"SELECT {_SOLUTION}, progress::text AS progress, reason, {document} AS document "
            "FROM solutions WHERE user_id = $1 AND id = $2"
        )
        values = dict(await self._fetchrow(sql, solution_id))
        text: bytes | None = values.pop("document")
        progress = values.pop("progress")
        return SolutionHeadRecord(**values, progress=orjson.loads(progress) if progress else None), text

    async def update_solution(
        self,
        solution_id: uuid.UUID,
        *,
        status: str | None,
        raw_body: bytes | None,
        expected: Collection[int] | None,
    ) -> SolutionRecord:
        """`raw_body`, when given, carries the new payload as its `payload` member."""
        payload = f"COALESCE({_MEMBER.format(param='$5', member='payload')}, payload)"
        sql = f"""
            UPDATE solutions
            SET status = COALESCE($4, status), payload = {payload}, version = version + 1, updated_at = now()
            WHERE user_id = $1 AND id = $2 AND {self._IF_MATCH} RETURNING {_SOLUTION}
        """
        row = await self._versioned(
            "solutions", sql, solution_id, expected, status, raw_body, document=raw_body is not None
        )
        return SolutionRecord(*row)

    async def delete_solution(self, solution_id: uuid.UUID, expected: Collection[int] | None) -> None:
        await self._delete("solutions", solution_id, expected)
