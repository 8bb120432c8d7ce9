"""a large scenario request's JSON text is stored beside it, for its reads

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-14 09:00:00

PostgreSQL renders a JSONB document as text on every read: for a 20 MB request (four million
numbers), about 0.3 s of its CPU per GET. `request_text` holds that text (UTF-8), rendered once by
the API in the background after a write (service/planning/request_texts.py);
`request_text_version` is the scenario version it was rendered for. A read uses the text only while
the two versions are equal, and every write of the API that changes the request bumps the version.
A statement from outside the API that changes the request but not the version is met by a trigger,
which forgets the copy: it costs one integer comparison per UPDATE naming either document column.
A copy that is missing or stale is never read: the read renders the document as before. Nothing is
backfilled here: existing rows have no copy until a large write, or a large read by a member who may
write.

The text is stored as the documents are (migration 0015): lz4 where the server has it, else
uncompressed and out of line. On disk it costs about two thirds of the text's size with lz4 (JSON
numbers compress poorly: 17 MB for the 26 MB text of a 2,000-stop request), its whole size without.

Downgrade: the trigger and the columns go.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("scenarios", sa.Column("request_text", sa.LargeBinary(), nullable=True))
    op.add_column("scenarios", sa.Column("request_text_version", sa.Integer(), nullable=True))
    # feature_not_supported: "compression method lz4 not supported" (built without lz4).
    op.execute(
        """
        DO $$
        BEGIN
            ALTER TABLE scenarios ALTER COLUMN request_text SET COMPRESSION lz4;
        EXCEPTION WHEN feature_not_supported THEN
            ALTER TABLE scenarios ALTER COLUMN request_text SET STORAGE EXTERNAL;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION scenarios_forget_request_text() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog AS $$
        BEGIN
            NEW.request_text := NULL;
            NEW.request_text_version := NULL;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER scenarios_forget_request_text BEFORE UPDATE OF request, original_request ON scenarios "
        "FOR EACH ROW WHEN (NEW.version = OLD.version) EXECUTE FUNCTION scenarios_forget_request_text()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS scenarios_forget_request_text ON scenarios")
    op.execute("DROP FUNCTION IF EXISTS scenarios_forget_request_text()")
    op.drop_column("scenarios", "request_text_version")
    op.drop_column("scenarios", "request_text")
