"""a deleted pending or running solution ends its event streams and its solve

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09 09:00:00

A solution goes away with its scenario, its session or its user (ON DELETE CASCADE), or on its own.
Whichever statement deletes it, this row trigger announces it in the deleting transaction, so the
announcement is delivered when (and only if) the deletion commits: on `routebook_solutions` a final
`deleted` state for the event streams of every instance, and for a running solve on
`routebook_solve_cancel`, so its worker stops it now rather than at its next progress write. The
WHEN clause leaves finished solutions (the bulk of a large deletion) without a call.

The channel names are service.solving.repository's SOLUTIONS_CHANNEL and CANCEL_CHANNEL.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION routebook_solution_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify(
                'routebook_solutions',
                json_build_object(
                    'id', OLD.id, 'status', 'deleted', 'seq', OLD.progress_seq + 1,
                    'progress', NULL, 'reason', NULL
                )::text
            );
            IF OLD.status = 'running' THEN
                PERFORM pg_notify('routebook_solve_cancel', OLD.id::text);
            END IF;
            RETURN OLD;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER solutions_deleted AFTER DELETE ON solutions FOR EACH ROW "
        "WHEN (OLD.status IN ('pending', 'running')) EXECUTE FUNCTION routebook_solution_deleted()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS solutions_deleted ON solutions")
    op.execute("DROP FUNCTION IF EXISTS routebook_solution_deleted()")
