"""re-solving from a plan: a solve records the solution it started from and its pins

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-11 09:00:00

`from_solution` names the earlier solution whose routes seed the solve (no foreign key: the record
stays true when that solution is deleted later), `pins` holds the pins as the client sent them, and
`seed_routes` the earlier routes as they were when the solve was queued — the solve must not depend
on that solution still existing, nor see later changes to it. All NULL for a plain solve and for a
recorded solution.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("solutions", sa.Column("from_solution", sa.Uuid(), nullable=True))
    op.add_column("solutions", sa.Column("pins", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column(
        "solutions", sa.Column("seed_routes", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("solutions", "seed_routes")
    op.drop_column("solutions", "pins")
    op.drop_column("solutions", "from_solution")
