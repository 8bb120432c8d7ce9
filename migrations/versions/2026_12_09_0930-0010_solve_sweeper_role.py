"""the sweeper's role: every user's active solves, readable across users and nothing more

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-09 09:30:00

A worker's sweeper finds solves that nothing will finish (pending or running with no live job in
the queue) whoever owns them, while FORCEd row-level security binds even the tables' owner to one
user per transaction. `routebook_sweeper` is a NOLOGIN role, like `routebook_app`, that reads only
the columns the sweep needs of active solutions (its own SELECT policy) and of the queue; it
cannot write anything. Ending a stranded solve then runs as its owner.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SWEEPER_ROLE = "routebook_sweeper"


def upgrade() -> None:
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{SWEEPER_ROLE}') THEN
                CREATE ROLE {SWEEPER_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database on this server created it at the same moment
        END
        $$
        """
    )
    op.execute(f"GRANT {SWEEPER_ROLE} TO CURRENT_USER")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {SWEEPER_ROLE}")
    op.execute(
        f"GRANT SELECT (id, user_id, status, cancel_requested, updated_at) ON solutions TO {SWEEPER_ROLE}"
    )
    op.execute(f"GRANT SELECT (dedupe_key, status, heartbeat) ON pgqueuer TO {SWEEPER_ROLE}")
    op.execute(
        f"CREATE POLICY solutions_sweeper ON solutions FOR SELECT TO {SWEEPER_ROLE} "
        "USING (status IN ('pending', 'running'))"
    )


def downgrade() -> None:
    op.execute("DROP POLICY IF EXISTS solutions_sweeper ON solutions")
    op.execute(f"REVOKE ALL ON pgqueuer FROM {SWEEPER_ROLE}")
    op.execute(f"REVOKE ALL ON solutions FROM {SWEEPER_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {SWEEPER_ROLE}")
    # The role is cluster-wide and may serve other databases on the same server: it is kept.
