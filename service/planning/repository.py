"""Every statement on sessions and scenarios, bound to its caller (`OwnedRepository`): the owner is
`$1` of every statement, and row-level security binds underneath. Solutions belong to solving
(`service.solving.repository`).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field, fields
from datetime import datetime

from service.core.db import Connection, new_id
from service.core.errors import NotFound
from service.core.pagination import Cursor
from service.core.repository import (
    AS_BYTES,
    CREATED_BY,
    MEMBER,
    SENT_JSONB,
    SENT_JSONB_TEXT_FROM,
    VERSION,
    Versioned,
    WorkspaceRepository,
    columns,
    page,
)

# NULL until a PATCH changes it: the scenario's request is then its original (migration 0004).
_CURRENT_REQUEST = "COALESCE(request, original_request)"
# A request stored in at most this many bytes is read whole rather than in pieces. Stored, a
# scenario's JSONB is about 0.6 of its text with lz4 (0.5 with pglz) and twice it uncompressed
# (migration 0015), so its text is 100 to 400 KB: well below a piece either way.
WHOLE_STORED_BYTES = 192 * 1024
# The stored text of the request (migration 0016) is this version's: a copy rendered for an earlier
# version, or none, is never read.
_STORED = "(request_text_version IS NOT DISTINCT FROM version AND request_text IS NOT NULL)"
# How long storing a request's text waits for its row, and may take in all (PostgreSQL intervals).
STORE_LOCK_WAIT = "2s"
STORE_STATEMENT_LIMIT = "60s"


def _text_follows(unchanged: str) -> str:
    """The SET items of a write that bumps the version, for the stored text: while `unchanged` (SQL,
    on the row before the write) says the request stays as it is, a text stored for the old version
    is the new version's too (no rendering again after a rename); otherwise it is dropped, its space
    freed at once."""
    return (
        f"request_text = CASE WHEN {unchanged} AND {_STORED} THEN request_text END, "
        f"request_text_version = CASE WHEN {unchanged} AND {_STORED} THEN version + 1 END"
    )


# Records are their responses' shapes (SessionRead, ScenarioSummary: the same members in the same
# order), written as JSON as they are (service/core/rendering.py). No __slots__: orjson writes a
# plain dataclass's fields several times faster.
@dataclass
class SessionRecord(Versioned):
    id: uuid.UUID
    name: str
    created_at: datetime
    updated_at: datetime
    created_by: uuid.UUID = field(metadata=CREATED_BY)
    _version: int = field(metadata=VERSION)


@dataclass
class ScenarioRecord(Versioned):
    id: uuid.UUID
    session_id: uuid.UUID
    name: str
    created_at: datetime
    updated_at: datetime
    created_by: uuid.UUID = field(metadata=CREATED_BY)
    _version: int = field(metadata=VERSION)


_SESSION = columns(SessionRecord)
_SCENARIO = columns(ScenarioRecord)
_SCENARIO_NAMES = ", ".join(f"d.{item.name}" for item in fields(ScenarioRecord))
_SCENARIO_WIDTH = len(fields(ScenarioRecord))


async def erase_workspace(conn: Connection, workspace_id: uuid.UUID) -> None:
    """Erase everything planned in a workspace, in the caller's (privileged) transaction: a deleted
    organisation's, or a deleted user's personal one. Scenarios and solutions follow by CASCADE."""
    # FORCEd row-level security binds the tables' owner too: admit this workspace's rows first.
    await conn.execute("SELECT set_config('app.workspace_id', $1, true)", str(workspace_id))
    await conn.execute("DELETE FROM sessions WHERE workspace_id = $1", workspace_id)


async def erase_owner(conn: Connection, user_id: uuid.UUID) -> None:
    """Erase what a deleted user planned in their personal workspace (its id is theirs): the identity
    service's tombstone runs this. What they created in an organisation's workspace is the
    organisation's, and stays."""
    await erase_workspace(conn, user_id)


class PlanningRepository(WorkspaceRepository):
    """Sessions and scenarios of one workspace, as one of its members."""

    # -- sessions -------------------------------------------------------------------------------

    async def create_session(self, name: str) -> SessionRecord:
        row = await self._fetchrow(
            f"INSERT INTO sessions (id, workspace_id, user_id, name) VALUES ($2, $1, $3, $4) RETURNING {_SESSION}",
            new_id(),
            self._user,
            name,
        )
        return SessionRecord(*row)

    async def list_sessions(self, limit: int, cursor: Cursor | None) -> list[SessionRecord]:
        sql, args = page(f"SELECT {_SESSION} FROM sessions WHERE workspace_id = $1", cursor, 2)
        return [SessionRecord(*row) for row in await self._fetch(sql, *args, limit + 1)]

    async def get_session(self, session_id: uuid.UUID) -> SessionRecord:
        sql = f"SELECT {_SESSION} FROM sessions WHERE workspace_id = $1 AND id = $2"
        return SessionRecord(*await self._fetchrow(sql, session_id))

    async def rename_session(
        self, session_id: uuid.UUID, name: str | None, expected: Collection[int] | None
    ) -> SessionRecord:
        sql = f"""
            UPDATE sessions SET name = COALESCE($4, name), version = version + 1, updated_at = now()
            WHERE workspace_id = $1 AND id = $2 AND {self.IF_MATCH} RETURNING {_SESSION}
        """
        return SessionRecord(
            *await self._versioned("sessions", sql, session_id, expected, name, document=False)
        )

    async def delete_session(self, session_id: uuid.UUID, expected: Collection[int] | None) -> None:
        """Its scenarios and solutions go with it (ON DELETE CASCADE)."""
        await self._delete("sessions", session_id, expected)

    # -- scenarios ------------------------------------------------------------------------------

    async def create_scenario(self, session_id: uuid.UUID, name: str, raw_body: bytes) -> ScenarioRecord:
        """Inserts under the session only if it is in the workspace: one statement, nothing written otherwise."""
        sql = f"""
            INSERT INTO scenarios (id, workspace_id, user_id, session_id, name, original_request)
            SELECT $3, s.workspace_id, $6, s.id, $4, {MEMBER.format(param="$5", member="request")}
            FROM sessions s WHERE s.workspace_id = $1 AND s.id = $2
            RETURNING {_SCENARIO}
        """
        row = await self._fetchrow(sql, session_id, new_id(), name, raw_body, self._user, document=True)
        return ScenarioRecord(*row)

    # A body's members, from PostgreSQL's one parse of it: a subquery kept whole by OFFSET 0 (the
    # planner would otherwise flatten it and parse the body again wherever `b` is named), whose one
    # row the statement reads in place. Not a MATERIALIZED CTE: that stores its row in a tuplestore,
    # and a parsed document of 20 MB (over 50 MB as JSONB) overflows work_mem into a temporary
    # file, written and read back on every write. The route's check of the body runs meanwhile, and
    # its ValidationFailed rolls the write back (service/core/document_writes.py); what is guarded
    # here only keeps a NOT NULL column from refusing a body the check refuses anyway.
    _BODY = "(SELECT convert_from({param}::bytea, 'UTF8')::jsonb AS b OFFSET 0) body"

    async def create_scenario_from_body(self, session_id: uuid.UUID, raw_body: bytes) -> ScenarioRecord:
        """A scenario named and filled by the body's `name` and `request`, under the session only if
        it is in the workspace (NotFound otherwise, as when the body is not even an object)."""
        sql = f"""
            INSERT INTO scenarios (id, workspace_id, user_id, session_id, name, original_request)
            SELECT $4, s.workspace_id, $5, s.id, body.b ->> 'name', body.b -> 'request'
            FROM sessions s, {self._BODY.format(param="$3")}
            WHERE s.workspace_id = $1 AND s.id = $2
              AND jsonb_typeof(body.b -> 'name') = 'string' AND jsonb_typeof(body.b -> 'request') = 'object'
            RETURNING {_SCENARIO}
        """
        row = await self._fetchrow(sql, session_id, raw_body, new_id(), self._user, document=True)
        return ScenarioRecord(*row)

    async def update_scenario_from_body(
        self, scenario_id: uuid.UUID, raw_body: bytes, expected: Collection[int] | None
    ) -> ScenarioRecord:
        """The body's `name` and `request`, each when sent (a rename, a new request, or both)."""
        sql = f"""
            UPDATE scenarios
            SET name = COALESCE(body.b ->> 'name', name), request = COALESCE(body.b -> 'request', request),
                {_text_follows("body.b -> 'request' IS NULL")}, version = version + 1, updated_at = now()
            FROM {self._BODY.format(param="$4")}
            WHERE workspace_id = $1 AND id = $2 AND {self.IF_MATCH} RETURNING {_SCENARIO}
        """
        return ScenarioRecord(
            *await self._versioned("scenarios", sql, scenario_id, expected, raw_body, document=True)
        )

    async def correct_scenario_name(self, scenario_id: uuid.UUID, name: str) -> ScenarioRecord:
        """The name as the body's check normalised it (surrounding whitespace stripped), after a
        write that took it as sent: part of that write, so the version stays."""
        sql = f"UPDATE scenarios SET name = $3 WHERE workspace_id = $1 AND id = $2 RETURNING {_SCENARIO}"
        return ScenarioRecord(*await self._fetchrow(sql, scenario_id, name))

    async def list_scenarios(
        self, session_id: uuid.UUID, limit: int, cursor: Cursor | None
    ) -> list[ScenarioRecord]:
        sql = f"SELECT {_SCENARIO} FROM scenarios WHERE workspace_id = $1 AND session_id = $2"
        return [
            ScenarioRecord(*row) for row in await self._children(sql, "sessions", session_id, limit, cursor)
        ]

    async def get_scenario(self, scenario_id: uuid.UUID) -> tuple[ScenarioRecord, bytes]:
        """The scenario and its current request as JSON text."""
        document = AS_BYTES.format(document=_CURRENT_REQUEST)
        sql = f"SELECT {_SCENARIO}, {document} AS document FROM scenarios WHERE workspace_id = $1 AND id = $2"
        row = await self._fetchrow(sql, scenario_id)
        text: bytes = row["document"]
        return ScenarioRecord(*row[:-1]), text

    async def get_scenario_whole(self, scenario_id: uuid.UUID) -> tuple[ScenarioRecord, bytes | None]:
        """The scenario, with its current request as JSON text when it is stored in at most
        WHOLE_STORED_BYTES (None when larger: `get_scenario_pieces` reads it). The usual small
        scenario costs this one plain statement. The stored size may be compressed (JSONB is
        TOASTed), so the bound is far below a piece."""
        whole = AS_BYTES.format(document=_CURRENT_REQUEST)
        sql = f"""
            SELECT {_SCENARIO},
                   CASE WHEN pg_column_size({_CURRENT_REQUEST}) <= $3 THEN {whole} END AS document
            FROM scenarios WHERE workspace_id = $1 AND id = $2
        """
        row = await self._fetchrow(sql, scenario_id, WHOLE_STORED_BYTES)
        return ScenarioRecord(*row[:-1]), row["document"]

    async def get_scenario_pieces(
        self, scenario_id: uuid.UUID, piece_bytes: int
    ) -> tuple[ScenarioRecord, list[bytes], bool]:
        """The scenario and its current request as JSON text, in pieces of `piece_bytes`: one row per
        piece, so no message (and no buffer of the driver's) holds the whole document. The last item
        says whether the text was stored (`store_request_text`) or had to be rendered."""
        # The stored text when it was rendered for this version, else PostgreSQL renders the JSONB:
        # jsonb_send's bytes, whose text starts past its version byte (no copy of the whole to cut
        # it). substring(... FROM 1) reads the stored text whole once (decompressed once), rather
        # than once per piece. OFFSET 0 keeps the subquery whole: flattened, the text would be
        # read or rendered once per piece.
        sql = f"""
            SELECT {_SCENARIO_NAMES}, g, substring(d.t FROM g FOR $3) AS piece, d.stored
            FROM (
                SELECT {_SCENARIO}, {_STORED} AS stored,
                       CASE WHEN {_STORED} THEN substring(request_text FROM 1)
                            ELSE {SENT_JSONB.format(document=_CURRENT_REQUEST)} END AS t
                FROM scenarios WHERE workspace_id = $1 AND id = $2 OFFSET 0
            ) d, generate_series(CASE WHEN d.stored THEN 1 ELSE {SENT_JSONB_TEXT_FROM} END, octet_length(d.t), $3) AS g
        """
        rows = sorted(await self._fetch(sql, scenario_id, piece_bytes), key=lambda row: row["g"])
        if not rows:
            raise NotFound()
        return ScenarioRecord(*rows[0][:_SCENARIO_WIDTH]), [row["piece"] for row in rows], rows[0]["stored"]

    async def store_request_text(self, scenario_id: uuid.UUID, version: int) -> bool:
        """Render the current request's text and store it for `version`, if the scenario is still at
        that version, has no text for it, and is large enough to be read in pieces (a smaller one is
        read whole, rendered in the statement: `get_scenario_whole`); False when nothing was stored.
        The row stays locked while PostgreSQL renders (a fraction of a second for tens of
        megabytes): a write to the same scenario meanwhile waits for it, then moves the version on
        (the text follows a rename, and is dropped by any other change). A write committed first
        leaves this statement a row at another version: nothing is stored."""
        sql = f"""
            UPDATE scenarios
            SET request_text = convert_to({_CURRENT_REQUEST}::text, 'UTF8'), request_text_version = version
            WHERE workspace_id = $1 AND id = $2 AND version = $3 AND NOT {_STORED}
              AND pg_column_size({_CURRENT_REQUEST}) > $4
            RETURNING 1
        """
        # Bounded, as it runs in the background where nobody waits: a row locked by a long write gives
        # up after STORE_LOCK_WAIT (the next large read asks again) rather than hold its pooled
        # connection, and the queue behind it, for as long as that write lasts.
        await self._conn.execute(
            f"SELECT set_config('lock_timeout', '{STORE_LOCK_WAIT}', true), "
            f"set_config('statement_timeout', '{STORE_STATEMENT_LIMIT}', true)"
        )
        return bool(await self._fetch(sql, scenario_id, version, WHOLE_STORED_BYTES))

    async def get_original_request(self, scenario_id: uuid.UUID) -> bytes:
        document = AS_BYTES.format(document="original_request")
        sql = f"SELECT {document} AS document FROM scenarios WHERE workspace_id = $1 AND id = $2"
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
        request = f"COALESCE({MEMBER.format(param='$5', member='request')}, request)"
        sql = f"""
            UPDATE scenarios
            SET name = COALESCE($4, name), request = {request}, {_text_follows("$5::bytea IS NULL")},
                version = version + 1, updated_at = now()
            WHERE workspace_id = $1 AND id = $2 AND {self.IF_MATCH} RETURNING {_SCENARIO}
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
            UPDATE scenarios SET request = NULL, {_text_follows("request IS NULL")}, version = version + 1,
                updated_at = now()
            WHERE workspace_id = $1 AND id = $2 AND {self.IF_MATCH} RETURNING {_SCENARIO}
        """
        return ScenarioRecord(*await self._versioned("scenarios", sql, scenario_id, expected, document=False))

    async def delete_scenario(self, scenario_id: uuid.UUID, expected: Collection[int] | None) -> None:
        """Its solutions go with it (ON DELETE CASCADE)."""
        await self._delete("scenarios", scenario_id, expected)
