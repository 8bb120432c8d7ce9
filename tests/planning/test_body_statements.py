"""The statements that write a scenario from its raw body, as PostgreSQL runs them: the body is parsed
in one place, and its parsed document is never stored aside on the way (a temporary file written and
read back: a MATERIALIZED CTE did that for every document larger than work_mem)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import orjson

from service.core.db import Database
from service.planning.repository import PlanningRepository
from tests.planning.conftest import Caller
from tests.planning.test_payloads import big_request, new_session


class ExplainingConnection:
    """A connection that runs each statement under EXPLAIN ANALYZE first (in a savepoint, rolled back:
    ANALYZE really writes) and keeps the plans, then runs it for its rows as usual."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.plans: list[dict[str, Any]] = []

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        await self.conn.execute("SAVEPOINT explained")
        explained = await self.conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
        await self.conn.execute("ROLLBACK TO SAVEPOINT explained")
        self.plans.append(orjson.loads(explained)[0]["Plan"])
        return list(await self.conn.fetch(sql, *args))


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in nodes(child))]


def assert_parsed_in_place(plan: dict[str, Any]) -> None:
    kinds = [node["Node Type"] for node in nodes(plan)]
    assert "CTE Scan" not in kinds and "Materialize" not in kinds, kinds
    # The body's subquery is scanned once: its one row, read in place by the statement.
    scans = [node for node in nodes(plan) if node["Node Type"] == "Subquery Scan"]
    assert len(scans) == 1 and scans[0]["Actual Loops"] == 1, scans
    assert sum(node.get("Temp Written Blocks", 0) for node in nodes(plan)) == 0, plan


async def test_a_document_past_work_mem_is_written_without_a_temporary_file(
    alice: Caller, service_db: Database
) -> None:
    session_id = uuid.UUID(await new_session(alice))
    body = orjson.dumps({"name": "large", "request": big_request(3_000_000)})
    async with service_db.as_member(alice.user_id, alice.user_id) as conn:
        # Far below the parsed document (a few megabytes as JSONB): a stored row would spill.
        await conn.execute("SET LOCAL work_mem = '1MB'")
        explaining = ExplainingConnection(conn)
        repo = PlanningRepository(explaining, workspace=alice.user_id, user=alice.user_id)  # type: ignore[arg-type]
        created = await repo.create_scenario_from_body(session_id, body)
        await repo.update_scenario_from_body(created.id, body, None)
        assert len(explaining.plans) == 2
        for plan in explaining.plans:
            assert_parsed_in_place(plan)
        stored = await conn.fetchval(
            "SELECT request = original_request AND name = 'large' FROM scenarios WHERE id = $1", created.id
        )
        assert stored is True


TRICKY_BODIES = [
    rb'{"name": "escapes", "request": {"path": "C:\\dir\\file", "quote": "say \"hi\"", "slash": "a\/b"}}',
    b'{"name": "unicode", "request": {"e": "\\u00e9\\u0301", "pair": "\\ud83d\\ude9a", "raw": "Z\xc3\xbcrich \xe6\x9d\xb1"}}',
    b'{"name": "controls", "request": {"tab": "a\\tb", "newline": "a\\nb", "cr": "\\r", "bell": "\\u0007"}}',
    b'{"name": "numbers", "request": {"big": 18446744073709551616, "f": 1e3, "neg": -0.0, "e": 2.5E-7}}',
    b'{"request": {"dup": 1, "dup": 2, "nested": {"a": [1, {"b": null}]}}, "name": "order and duplicates"}',
    b'{ "name" : "spaces" ,\n\t"request" : { "k" :\r\n [ ] } }',
]


async def test_the_stored_request_is_postgresql_s_own_parse_of_the_sent_member(
    alice: Caller, service_db: Database
) -> None:
    """The GET's bytes are exactly PostgreSQL's text of the body's `request` member as sent: the
    statements parse the body once and store that member unchanged."""
    session_id = await new_session(alice)
    for body in TRICKY_BODIES:
        created = await alice.call("POST", f"/sessions/{session_id}/scenarios", body)
        assert created.status_code == 201, (body, created.text)
        read = await alice.call("GET", f"/scenarios/{created.json()['id']}")
        async with service_db.as_member(alice.user_id, alice.user_id) as conn:
            expected = await conn.fetchval(
                "SELECT convert_to((convert_from($1::bytea, 'UTF8')::jsonb -> 'request')::text, 'UTF8')", body
            )
        document = read.content[read.content.index(b'"request":') + len(b'"request":') : -1]
        assert document == expected, body


async def test_a_nul_escape_is_refused_with_nothing_written(alice: Caller, service_db: Database) -> None:
    session_id = await new_session(alice)
    for body in (
        b'{"name": "nul", "request": {"s": "a\\u0000b"}}',
        b'{"name": "nul", "request": {"a\\u0000": 1}}',
    ):
        refused = await alice.call("POST", f"/sessions/{session_id}/scenarios", body)
        assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
    async with service_db.as_member(alice.user_id, alice.user_id) as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM scenarios WHERE workspace_id = $1", alice.user_id) == 0
        )
