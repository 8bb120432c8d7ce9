"""Every planning query, bound to its caller: a repository cannot be built without its owner.

The owner filter is written once (`_owned`); every statement starts from `_select`, `_update` or
`_delete`, or inserts under a parent found through them. Row-level security (migration 0002) binds
underneath, so a query that forgot the filter would still see only the caller's rows.

A repository executes statements in the caller's transaction and never commits: the request's
transaction commits in one place (routes.planning_repository). Missing and foreign rows raise the
same NotFound, so no route can tell them apart.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Delete,
    Executable,
    Integer,
    LargeBinary,
    Result,
    RowMapping,
    Select,
    Table,
    Text,
    Update,
    any_,
    delete,
    func,
    insert,
    literal,
    literal_column,
    null,
    select,
    type_coerce,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import new_id
from service.errors import AppError, NotFound, PreconditionFailed, ValidationFailed
from service.pagination import Cursor, after_cursor
from service.planning.models import PlanningSession, Scenario, Solution

SESSIONS = cast(Table, PlanningSession.__table__)  # type: ignore[attr-defined]
SCENARIOS = cast(Table, Scenario.__table__)  # type: ignore[attr-defined]
SOLUTIONS = cast(Table, Solution.__table__)  # type: ignore[attr-defined]

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


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: uuid.UUID
    name: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ScenarioRecord:
    id: uuid.UUID
    session_id: uuid.UUID
    name: str
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SolutionRecord:
    id: uuid.UUID
    scenario_id: uuid.UUID
    status: str
    version: int
    created_at: datetime
    updated_at: datetime


_SESSION = (SESSIONS.c.id, SESSIONS.c.name, SESSIONS.c.created_at, SESSIONS.c.updated_at)
_SCENARIO = (
    SCENARIOS.c.id,
    SCENARIOS.c.session_id,
    SCENARIOS.c.name,
    SCENARIOS.c.version,
    SCENARIOS.c.created_at,
    SCENARIOS.c.updated_at,
)
_SOLUTION = (
    SOLUTIONS.c.id,
    SOLUTIONS.c.scenario_id,
    SOLUTIONS.c.status,
    SOLUTIONS.c.version,
    SOLUTIONS.c.created_at,
    SOLUTIONS.c.updated_at,
)
# NULL until a PATCH changes it: the scenario's request is then its original (migration 0004).
_CURRENT_REQUEST = func.coalesce(SCENARIOS.c.request, SCENARIOS.c.original_request)


def _json_text(document: ColumnElement[Any]) -> ColumnElement[bytes]:
    """PostgreSQL's text of a JSONB value as bytes: no decode to str and encode back in Python."""
    return type_coerce(func.convert_to(sql_cast(document, Text), literal_column("'UTF8'")), LargeBinary)


def _document(raw_body: bytes, member: str) -> ColumnElement[Any]:
    """The document the client sent as `member` of its body, parsed by PostgreSQL and only there."""
    body = sql_cast(func.convert_from(literal(raw_body, LargeBinary), literal_column("'UTF8'")), JSONB)
    return body[member]


def _client_error(exc: DBAPIError, *, document: bool) -> AppError | None:
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    if sqlstate == _FOREIGN_KEY_VIOLATION:
        return NotFound()  # the parent went away between the lookup and the insert
    if document and sqlstate[:2] in {"22", "54"}:
        message = _DOCUMENT_ERRORS.get(sqlstate, "The document cannot be stored.")
        return ValidationFailed([{"loc": ["body"], "msg": message, "type": "document_invalid"}])
    return None


class PlanningRepository:
    """Sessions, scenarios and solutions of one user, `owner`."""

    def __init__(self, session: AsyncSession, *, owner: uuid.UUID) -> None:
        if not isinstance(owner, uuid.UUID):
            raise TypeError("a PlanningRepository is bound to its caller: owner must be a user id")
        self._session = session
        self._owner = owner

    @property
    def owner(self) -> uuid.UUID:
        return self._owner

    # -- the owner filter, written once --------------------------------------------------------

    def _owned(self, table: Table) -> ColumnElement[bool]:
        return cast(ColumnElement[bool], table.c.user_id == self._owner)

    def _select(self, table: Table, *columns: ColumnElement[Any]) -> Select[Any]:
        return select(*columns).where(self._owned(table))

    def _update(self, table: Table) -> Update:
        return update(table).where(self._owned(table))

    def _delete(self, table: Table) -> Delete:
        return delete(table).where(self._owned(table))

    # -- execution ------------------------------------------------------------------------------

    async def _run(self, statement: Executable, *, document: bool = False) -> Result[Any]:
        """`document`: the statement carries a client's document, whose data errors are a 422."""
        try:
            return await self._session.execute(statement)
        except DBAPIError as exc:
            error = _client_error(exc, document=document)
            if error is None:
                raise
            raise error from None

    async def _one(self, statement: Executable, *, document: bool = False) -> RowMapping:
        row = (await self._run(statement, document=document)).mappings().one_or_none()
        if row is None:
            raise NotFound()
        return row

    async def _exists(self, table: Table, item_id: uuid.UUID) -> bool:
        found = await self._run(self._select(table, table.c.id).where(table.c.id == item_id))
        return found.first() is not None

    def _page(self, statement: Select[Any], table: Table, limit: int, cursor: Cursor | None) -> Select[Any]:
        """Newest first, `limit + 1` rows (the extra one says a next page exists)."""
        if cursor is not None:
            statement = statement.where(
                after_cursor(cast(Any, table.c.created_at), cast(Any, table.c.id), cursor)
            )
        return statement.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit + 1)

    async def _write_versioned(
        self,
        table: Table,
        item_id: uuid.UUID,
        values: Mapping[str, Any],
        expected: Collection[int] | None,
        returning: tuple[ColumnElement[Any], ...],
        *,
        document: bool,
    ) -> RowMapping:
        """One atomic UPDATE: a stale `expected` version matches no row, so nothing is written."""
        statement = (
            self._update(table)
            .where(table.c.id == item_id)
            .values(version=table.c.version + 1, updated_at=func.now(), **values)
            .returning(*returning)
        )
        if expected is not None:
            # One array parameter, however many versions: the statement's shape never varies.
            versions = literal(sorted(expected), ARRAY(Integer))
            statement = statement.where(table.c.version == any_(versions))
        row = (await self._run(statement, document=document)).mappings().one_or_none()
        if row is not None:
            return row
        if expected is not None and await self._exists(table, item_id):
            raise PreconditionFailed()
        raise NotFound()

    async def _delete_one(self, table: Table, item_id: uuid.UUID) -> None:
        await self._one(self._delete(table).where(table.c.id == item_id).returning(table.c.id))

    # -- sessions -------------------------------------------------------------------------------

    async def create_session(self, name: str) -> SessionRecord:
        statement = insert(SESSIONS).values(id=new_id(), user_id=self._owner, name=name).returning(*_SESSION)
        return SessionRecord(**await self._one(statement))

    async def list_sessions(self, limit: int, cursor: Cursor | None) -> list[SessionRecord]:
        statement = self._page(self._select(SESSIONS, *_SESSION), SESSIONS, limit, cursor)
        return [SessionRecord(**row) for row in (await self._run(statement)).mappings()]

    async def get_session(self, session_id: uuid.UUID) -> SessionRecord:
        return SessionRecord(
            **await self._one(self._select(SESSIONS, *_SESSION).where(SESSIONS.c.id == session_id))
        )

    async def rename_session(self, session_id: uuid.UUID, name: str | None) -> SessionRecord:
        values: dict[str, Any] = {"updated_at": func.now()}
        if name is not None:
            values["name"] = name
        statement = (
            self._update(SESSIONS).where(SESSIONS.c.id == session_id).values(**values).returning(*_SESSION)
        )
        return SessionRecord(**await self._one(statement))

    async def delete_session(self, session_id: uuid.UUID) -> None:
        """Its scenarios and solutions go with it (ON DELETE CASCADE)."""
        await self._delete_one(SESSIONS, session_id)

    # -- scenarios ------------------------------------------------------------------------------

    async def create_scenario(self, session_id: uuid.UUID, name: str, raw_body: bytes) -> ScenarioRecord:
        """Inserts under the session only if the caller owns it: one statement, nothing written otherwise."""
        parent = SESSIONS
        rows = self._select(
            parent,
            literal(new_id()),
            parent.c.user_id,
            parent.c.id,
            literal(name, Text),
            _document(raw_body, "request"),
        ).where(parent.c.id == session_id)
        statement = (
            insert(SCENARIOS)
            .from_select(["id", "user_id", "session_id", "name", "original_request"], rows)
            .returning(*_SCENARIO)
        )
        return ScenarioRecord(**await self._one(statement, document=True))

    async def list_scenarios(
        self, session_id: uuid.UUID, limit: int, cursor: Cursor | None
    ) -> list[ScenarioRecord]:
        statement = self._select(SCENARIOS, *_SCENARIO).where(SCENARIOS.c.session_id == session_id)
        rows = [
            ScenarioRecord(**row)
            for row in (await self._run(self._page(statement, SCENARIOS, limit, cursor))).mappings()
        ]
        if not rows and not await self._exists(SESSIONS, session_id):
            raise NotFound()
        return rows

    async def get_scenario(self, scenario_id: uuid.UUID) -> tuple[ScenarioRecord, bytes]:
        """The scenario and its current request as JSON text."""
        row = await self._one(
            self._select(SCENARIOS, *_SCENARIO, _json_text(_CURRENT_REQUEST).label("document")).where(
                SCENARIOS.c.id == scenario_id
            )
        )
        fields = dict(row)
        document: bytes = fields.pop("document")
        return ScenarioRecord(**fields), document

    async def get_original_request(self, scenario_id: uuid.UUID) -> bytes:
        row = await self._one(
            self._select(SCENARIOS, _json_text(SCENARIOS.c.original_request).label("document")).where(
                SCENARIOS.c.id == scenario_id
            )
        )
        document: bytes = row["document"]
        return document

    async def update_scenario(
        self,
        scenario_id: uuid.UUID,
        *,
        name: str | None,
        raw_body: bytes | None,
        expected: Collection[int] | None,
    ) -> ScenarioRecord:
        """`raw_body`, when given, carries the new request as its `request` member."""
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = name
        if raw_body is not None:
            values["request"] = _document(raw_body, "request")
        return ScenarioRecord(
            **await self._write_versioned(
                SCENARIOS, scenario_id, values, expected, _SCENARIO, document=raw_body is not None
            )
        )

    async def reset_scenario(
        self, scenario_id: uuid.UUID, expected: Collection[int] | None
    ) -> ScenarioRecord:
        """The request becomes the original again: NULL reads as the original, no copy is made."""
        return ScenarioRecord(
            **await self._write_versioned(
                SCENARIOS, scenario_id, {"request": null()}, expected, _SCENARIO, document=False
            )
        )

    async def delete_scenario(self, scenario_id: uuid.UUID) -> None:
        """Its solutions go with it (ON DELETE CASCADE)."""
        await self._delete_one(SCENARIOS, scenario_id)

    # -- solutions ------------------------------------------------------------------------------

    async def create_solution(
        self, scenario_id: uuid.UUID, status: str, raw_body: bytes | None
    ) -> SolutionRecord:
        """`raw_body`, when given, carries the payload as its `payload` member."""
        parent = SCENARIOS
        payload = _document(raw_body, "payload") if raw_body is not None else null()
        rows = self._select(
            parent, literal(new_id()), parent.c.user_id, parent.c.id, literal(status, Text), payload
        ).where(parent.c.id == scenario_id)
        statement = (
            insert(SOLUTIONS)
            .from_select(["id", "user_id", "scenario_id", "status", "payload"], rows)
            .returning(*_SOLUTION)
        )
        return SolutionRecord(**await self._one(statement, document=raw_body is not None))

    async def list_solutions(
        self, scenario_id: uuid.UUID, limit: int, cursor: Cursor | None
    ) -> list[SolutionRecord]:
        statement = self._select(SOLUTIONS, *_SOLUTION).where(SOLUTIONS.c.scenario_id == scenario_id)
        rows = [
            SolutionRecord(**row)
            for row in (await self._run(self._page(statement, SOLUTIONS, limit, cursor))).mappings()
        ]
        if not rows and not await self._exists(SCENARIOS, scenario_id):
            raise NotFound()
        return rows

    async def get_solution(self, solution_id: uuid.UUID) -> tuple[SolutionRecord, bytes | None]:
        """The solution and its payload as JSON text (None when it has none)."""
        row = await self._one(
            self._select(SOLUTIONS, *_SOLUTION, _json_text(SOLUTIONS.c.payload).label("document")).where(
                SOLUTIONS.c.id == solution_id
            )
        )
        fields = dict(row)
        document: bytes | None = fields.pop("document")
        return SolutionRecord(**fields), document

    async def update_solution(
        self,
        solution_id: uuid.UUID,
        *,
        status: str | None,
        raw_body: bytes | None,
        expected: Collection[int] | None,
    ) -> SolutionRecord:
        """`raw_body`, when given, carries the new payload as its `payload` member."""
        values: dict[str, Any] = {}
        if status is not None:
            values["status"] = status
        if raw_body is not None:
            values["payload"] = _document(raw_body, "payload")
        return SolutionRecord(
            **await self._write_versioned(
                SOLUTIONS, solution_id, values, expected, _SOLUTION, document=raw_body is not None
            )
        )

    async def delete_solution(self, solution_id: uuid.UUID) -> None:
        await self._delete_one(SOLUTIONS, solution_id)
