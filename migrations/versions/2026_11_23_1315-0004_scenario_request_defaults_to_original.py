"""a scenario's request is NULL until edited: it reads as the original, stored once

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 13:15:00

A request document can be tens of megabytes. Storing it twice at creation (request and
original_request) doubled the write: two JSONB values compressed and TOASTed. Now `request` is NULL
until a PATCH changes it, reads use COALESCE(request, original_request), and a reset is
`request = NULL` instead of a copy.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE scenarios ALTER COLUMN request DROP NOT NULL")


def downgrade() -> None:
    # FORCEd row-level security would hide every row from a login role that owns the table but is
    # no superuser (the owner is exempt only without FORCE), and the backfill would silently miss them.
    op.execute("ALTER TABLE scenarios NO FORCE ROW LEVEL SECURITY")
    op.execute("UPDATE scenarios SET request = original_request WHERE request IS NULL")
    op.execute("ALTER TABLE scenarios FORCE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE scenarios ALTER COLUMN request SET NOT NULL")
