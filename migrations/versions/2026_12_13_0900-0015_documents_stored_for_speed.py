"""large documents are stored for speed: lz4 where the server has it, else uncompressed

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-13 09:00:00

A scenario's request and a solution's request and plan are JSONB documents of up to tens of
megabytes. PostgreSQL's default TOAST compression, pglz, costs about a second of CPU to compress a
20 MB request on write (half of the whole INSERT) and tens of milliseconds to decompress it on every
read. lz4 does the same in a fraction of that, for about a third more disk than pglz: the columns
use it when the server was built with it (the PGDG packages are). A server
without it (the embedded development server) refuses lz4; there, the documents are stored
uncompressed (STORAGE EXTERNAL: out of line, as before): about three and a half times pglz's disk,
for writes twice as fast. Either applies to values written from now on; stored ones stay as they are.

The choice is made here, once: a dump restored onto a server without lz4 needs `pg_dump
--no-toast-compression` (its `SET COMPRESSION lz4` statements fail there), and a database moved
from such a server onto one with lz4 keeps its uncompressed columns until they are altered. Every
physical copy of a database holding lz4 values (replicas, restores, pg_upgrade) needs lz4 too.
SET COMPRESSION needs PostgreSQL 14 or later. Each ALTER takes a brief ACCESS EXCLUSIVE lock (the
catalogue only, no rewrite), so it waits for running statements on the table.

Downgrade: PostgreSQL's defaults again (pglz, EXTENDED); values written with lz4 stay lz4.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DOCUMENTS = (
    ("scenarios", "request"),
    ("scenarios", "original_request"),
    ("solutions", "request"),
    ("solutions", "payload"),
)


def upgrade() -> None:
    for table, column in DOCUMENTS:
        # feature_not_supported: "compression method lz4 not supported" (built without lz4).
        op.execute(
            f"""
            DO $$
            BEGIN
                ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4;
            EXCEPTION WHEN feature_not_supported THEN
                ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE EXTERNAL;
            END $$
            """
        )


def downgrade() -> None:
    for table, column in DOCUMENTS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION DEFAULT")
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE EXTENDED")
