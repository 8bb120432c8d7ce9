"""extended statistics: a child's parent determines its owner

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 06:00:00

Every list of a parent's children filters on both `user_id` (the owner filter) and the parent
(`session_id`, `scenario_id`), and the parent determines the owner. Without statistics saying so the
planner multiplies the two selectivities as if independent: at 1M scenarios over 10,000 users it
expects about one row of a 500-scenario session, and picks a bitmap scan of the whole session plus a
top-N sort over an ordered index scan that stops after `limit + 1` rows — each page then reads every
scenario of the session. Functional-dependency statistics (gathered by ANALYZE) correct the estimate,
and the keyset lists become index scans in index order, with no Sort. No index is added: the
existing (parent, created_at DESC, id DESC) indexes already serve the order.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATISTICS = {
    "scenarios_session_id_user_id": ("scenarios", "session_id, user_id"),
    "solutions_scenario_id_user_id": ("solutions", "scenario_id, user_id"),
}


def upgrade() -> None:
    for name, (table, columns) in STATISTICS.items():
        op.execute(f"CREATE STATISTICS {name} (dependencies) ON {columns} FROM {table}")
        op.execute(f"ANALYZE {table}")


def downgrade() -> None:
    for name in STATISTICS:
        op.execute(f"DROP STATISTICS IF EXISTS {name}")
