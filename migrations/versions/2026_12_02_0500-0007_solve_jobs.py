"""solve jobs: the queue (pgqueuer) in this database, solve state on solutions, stream tickets

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 05:00:00

- pgqueuer's schema, as the pinned pgqueuer version builds it. The request path enqueues as the
  app role inside the request's transaction, so that role may insert a job (and read back its id);
  workers dequeue as the login role.
- solutions: `cancelled`, the request snapshot a solve works on (the scenario may change while it
  waits), the version it was queued at, solve options, progress (with a sequence number: the SSE
  event id), a cancel flag, the failure reason, attempts and timestamps; a partial index counts a
  user's active solves.
- stream_tickets: short-lived, single-use tickets for a browser's EventSource (no RLS: a ticket is
  redeemed before its user is known; only its hash is stored).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment
from sqlalchemy.dialects import postgresql
from sqlalchemy.util import await_only

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "routebook_app"
STATUSES = ("pending", "running", "succeeded", "failed")
SOLVE_STATUSES = (*STATUSES, "cancelled")


def _execute_script(sql: str) -> None:
    """Several statements in one message (pgqueuer's DDL holds a function body): asyncpg's simple
    query protocol, since a prepared statement takes one command."""
    raw = op.get_bind().connection.dbapi_connection.driver_connection  # type: ignore[union-attr]
    await_only(raw.execute(sql))


def _status_check(statuses: tuple[str, ...]) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"


def upgrade() -> None:
    queue = QueryBuilderEnvironment()
    _execute_script(queue.build_install_query(create_schema=False))
    op.execute(f"GRANT INSERT, SELECT (id, entrypoint, priority, dedupe_key) ON pgqueuer TO {APP_ROLE}")
    op.execute(f"GRANT INSERT ON pgqueuer_log TO {APP_ROLE}")
    op.execute(f"GRANT USAGE ON SEQUENCE pgqueuer_id_seq, pgqueuer_log_id_seq TO {APP_ROLE}")

    op.drop_constraint(op.f("ck_solutions_status"), "solutions", type_="check")
    op.create_check_constraint("status", "solutions", _status_check(SOLVE_STATUSES))
    op.add_column("solutions", sa.Column("request", postgresql.JSONB(), nullable=True))
    op.add_column("solutions", sa.Column("scenario_version", sa.Integer(), nullable=True))
    op.add_column("solutions", sa.Column("time_limit_s", sa.Integer(), nullable=True))
    op.add_column("solutions", sa.Column("seed", sa.BigInteger(), nullable=True))
    op.add_column("solutions", sa.Column("progress", postgresql.JSONB(), nullable=True))
    op.add_column(
        "solutions", sa.Column("progress_seq", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("solutions", sa.Column("reason", sa.Text(), nullable=True))
    op.add_column(
        "solutions",
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column(
        "solutions", sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("solutions", sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("solutions", sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_solutions_user_id_active",
        "solutions",
        ["user_id"],
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )

    op.create_table(
        "stream_tickets",
        sa.Column("ticket_hash", sa.LargeBinary(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("solution_id", sa.Uuid(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ticket_hash", name=op.f("pk_stream_tickets")),
    )
    op.create_index(op.f("ix_stream_tickets_expires_at"), "stream_tickets", ["expires_at"])
    op.execute(f"GRANT INSERT ON stream_tickets TO {APP_ROLE}")


def downgrade() -> None:
    op.drop_index(op.f("ix_stream_tickets_expires_at"), table_name="stream_tickets")
    op.drop_table("stream_tickets")
    op.drop_index("ix_solutions_user_id_active", table_name="solutions")
    for column in (
        "finished_at",
        "started_at",
        "attempts",
        "cancel_requested",
        "reason",
        "progress_seq",
        "progress",
        "seed",
        "time_limit_s",
        "scenario_version",
        "request",
    ):
        op.drop_column("solutions", column)
    op.drop_constraint(op.f("ck_solutions_status"), "solutions", type_="check")
    # A cancelled solve has no older spelling; it reads as failed.
    op.execute("ALTER TABLE solutions NO FORCE ROW LEVEL SECURITY")
    op.execute("UPDATE solutions SET status = 'failed' WHERE status = 'cancelled'")
    op.execute("ALTER TABLE solutions FORCE ROW LEVEL SECURITY")
    op.create_check_constraint("status", "solutions", _status_check(STATUSES))
    _execute_script(QueryBuilderEnvironment().build_uninstall_query())
