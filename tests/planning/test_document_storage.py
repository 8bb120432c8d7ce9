"""Large documents are stored for speed: lz4-compressed where the PostgreSQL server has lz4, and
uncompressed where it does not — never with pglz, whose compression alone was half the CPU of a
large write (migrations/versions/…-0015_documents_stored_for_speed.py)."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.kit.sql import SqlAdmin, scope_rls_to
from tests.planning.conftest import Caller, encode
from tests.planning.test_payloads import big_request, new_session

# The document columns, as the migration names them.
DOCUMENTS = {
    ("scenarios", "request"),
    ("scenarios", "original_request"),
    ("solutions", "request"),
    ("solutions", "payload"),
}


async def server_has_lz4(admin: SqlAdmin) -> bool:
    """Whether this PostgreSQL was built with lz4: it refuses a column using it otherwise."""
    try:
        async with admin.transaction() as session:
            await session.execute(text("CREATE TEMPORARY TABLE lz4_probe (j jsonb COMPRESSION lz4)"))
            await session.rollback()
    except DBAPIError as error:
        assert getattr(error.orig, "sqlstate", None) == "0A000", error  # feature_not_supported
        return False
    return True


async def test_every_document_column_is_stored_lz4_or_uncompressed(clean_db: SqlAdmin) -> None:
    async with clean_db.transaction() as session:
        rows = (
            await session.execute(
                text(
                    """
                    SELECT c.relname, a.attname, a.attcompression::text, a.attstorage::text
                    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
                      AND a.atttypid = 'jsonb'::regtype AND a.attnum > 0 AND NOT a.attisdropped
                    """
                )
            )
        ).all()
    stored = {(table, column): (compression, storage) for table, column, compression, storage in rows}
    assert stored.keys() >= DOCUMENTS
    expected = ("l", "x") if await server_has_lz4(clean_db) else ("", "e")
    assert {column: stored[column] for column in DOCUMENTS} == dict.fromkeys(DOCUMENTS, expected)
    # The small JSONB columns (progress, pins, ...) keep PostgreSQL's defaults.
    assert all(stored[column] == ("", "x") for column in stored.keys() - DOCUMENTS)


async def test_a_large_request_is_written_lz4_or_uncompressed(alice: Caller, clean_db: SqlAdmin) -> None:
    session_id = await new_session(alice)
    created = await alice.call(
        "POST", f"/sessions/{session_id}/scenarios", encode({"name": "big", "request": big_request(300_000)})
    )
    assert created.status_code == 201, created.text
    scenario_id = created.json()["id"]
    patched = await alice.call(
        "PATCH", f"/scenarios/{scenario_id}", encode({"request": big_request(200_000)})
    )
    assert patched.status_code == 200, patched.text

    async with clean_db.transaction() as session:
        await scope_rls_to(session, alice.user_id)
        row = (
            await session.execute(
                text(
                    """
                    SELECT pg_column_compression(original_request), pg_column_compression(request),
                           pg_column_size(original_request), octet_length(original_request::text)
                    FROM scenarios WHERE id = :id
                    """
                ),
                {"id": uuid.UUID(scenario_id)},
            )
        ).one()
    original_method, current_method, stored_bytes, text_bytes = row
    if await server_has_lz4(clean_db):
        assert (original_method, current_method) == ("lz4", "lz4")
        assert stored_bytes < text_bytes
    else:
        # Uncompressed: JSONB stores numbers in binary with offsets, larger than their text.
        assert (original_method, current_method) == (None, None)
        assert stored_bytes > text_bytes
