"""outbound webhooks: endpoints, deliveries and attempts, owned under row-level security

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10 09:00:00

Every row carries its owner's `user_id`, bound by the same FORCEd owner policy as the planning
tables (migration 0002). The dispatcher in the worker must find due deliveries whoever owns them:
`routebook_dispatcher`, a NOLOGIN role like the sweeper (migration 0010), reads only the columns
that say which delivery is due and whose it is, and writes only its claim (`next_attempt_at`,
`claimed_until`) and the purge of week-old bodies (`body`, `body_expires_at`) — which may only erase
a body, never write one (a trigger). Sending and recording then run as the owner.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "routebook_app"
DISPATCHER_ROLE = "routebook_dispatcher"
TABLES = ("webhook_endpoints", "webhook_deliveries", "webhook_attempts")
CURRENT_USER_ID = "NULLIF(current_setting('app.user_id', true), '')::uuid"
EVENTS = "'solution.succeeded', 'solution.failed', 'solution.cancelled'"


def _timestamp(name: str, *, nullable: bool = False, default: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        server_default=sa.text("now()") if default else None,
        nullable=nullable,
    )


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        _timestamp("created_at", default=True),
        _timestamp("updated_at", default=True),
        sa.CheckConstraint(
            f"events <@ ARRAY[{EVENTS}]::text[] AND cardinality(events) > 0",
            name=op.f("ck_webhook_endpoints_events"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_webhook_endpoints_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
        sa.UniqueConstraint("id", "user_id", name=op.f("uq_webhook_endpoints_id_user_id")),
    )
    op.create_index(
        "ix_webhook_endpoints_user_id_created_at_id",
        "webhook_endpoints",
        ["user_id", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("solution_id", sa.Uuid(), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        _timestamp("body_expires_at", nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        _timestamp("next_attempt_at", nullable=True),
        _timestamp("claimed_until", nullable=True),
        _timestamp("retry_until"),
        _timestamp("created_at", default=True),
        _timestamp("updated_at", default=True),
        sa.CheckConstraint(f"event_type IN ({EVENTS})", name=op.f("ck_webhook_deliveries_event_type")),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')", name=op.f("ck_webhook_deliveries_status")
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id", "user_id"],
            ["webhook_endpoints.id", "webhook_endpoints.user_id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_user_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("id", "user_id", name=op.f("uq_webhook_deliveries_id_user_id")),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_body_expires_at",
        "webhook_deliveries",
        ["body_expires_at"],
        postgresql_where=sa.text("body_expires_at IS NOT NULL"),
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint_id_created_at_id",
        "webhook_deliveries",
        ["endpoint_id", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        _timestamp("attempted_at"),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id", "user_id"],
            ["webhook_deliveries.id", "webhook_deliveries.user_id"],
            name=op.f("fk_webhook_attempts_delivery_id_user_id_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index(
        op.f("ix_webhook_attempts_delivery_id_attempted_at"),
        "webhook_attempts",
        ["delivery_id", "attempted_at"],
    )

    for table in TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_owner ON {table} "
            f"USING (user_id = {CURRENT_USER_ID}) WITH CHECK (user_id = {CURRENT_USER_ID})"
        )

    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{DISPATCHER_ROLE}') THEN
                CREATE ROLE {DISPATCHER_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database on this server created it at the same moment
        END
        $$
        """
    )
    op.execute(f"GRANT {DISPATCHER_ROLE} TO CURRENT_USER")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {DISPATCHER_ROLE}")
    op.execute(
        "GRANT SELECT (id, user_id, status, next_attempt_at, claimed_until, body_expires_at), "
        f"UPDATE (next_attempt_at, claimed_until, body, body_expires_at) ON webhook_deliveries "
        f"TO {DISPATCHER_ROLE}"
    )
    # The purge needs UPDATE (body), which would let the role write any body, sent signed as its
    # owner's: it may only erase one.
    op.execute(
        f"""
        CREATE FUNCTION webhook_deliveries_dispatcher_only_erases() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF current_user = '{DISPATCHER_ROLE}' AND NEW.body IS NOT NULL
                    AND NEW.body IS DISTINCT FROM OLD.body THEN
                RAISE EXCEPTION 'the dispatcher may only erase a delivery''s body'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER webhook_deliveries_dispatcher_only_erases BEFORE UPDATE OF body "
        "ON webhook_deliveries FOR EACH ROW EXECUTE FUNCTION webhook_deliveries_dispatcher_only_erases()"
    )
    op.execute(
        f"CREATE POLICY webhook_deliveries_dispatcher_read ON webhook_deliveries FOR SELECT "
        f"TO {DISPATCHER_ROLE} USING (true)"
    )
    op.execute(
        f"CREATE POLICY webhook_deliveries_dispatcher_write ON webhook_deliveries FOR UPDATE "
        f"TO {DISPATCHER_ROLE} USING (true) WITH CHECK (true)"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS webhook_deliveries_dispatcher_only_erases ON webhook_deliveries")
    op.execute("DROP FUNCTION IF EXISTS webhook_deliveries_dispatcher_only_erases()")
    op.execute("DROP POLICY IF EXISTS webhook_deliveries_dispatcher_write ON webhook_deliveries")
    op.execute("DROP POLICY IF EXISTS webhook_deliveries_dispatcher_read ON webhook_deliveries")
    op.execute(f"REVOKE ALL ON webhook_deliveries FROM {DISPATCHER_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {DISPATCHER_ROLE}")
    for table in reversed(TABLES):
        op.execute(f"DROP POLICY IF EXISTS {table}_owner ON {table}")
        op.execute(f"REVOKE ALL ON {table} FROM {APP_ROLE}")
    op.drop_index(op.f("ix_webhook_attempts_delivery_id_attempted_at"), table_name="webhook_attempts")
    op.drop_table("webhook_attempts")
    op.drop_index("ix_webhook_deliveries_endpoint_id_created_at_id", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_body_expires_at", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhook_endpoints_user_id_created_at_id", table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
    # The role is cluster-wide and may serve other databases on the same server: it is kept.
