"""row-level security on the planning tables, and the request role it binds

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:54:00

The request path runs as `routebook_app` (SET LOCAL ROLE via set_config in service/core/db.py), a
NOLOGIN role that owns nothing, so the policies bind even when DATABASE_URL logs in as a superuser
or as the tables' owner. FORCE makes them bind the owner too. The policies are on PUBLIC, so they
restrict whatever role runs a query; only a superuser or a BYPASSRLS role sees past them.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "routebook_app"
PLANNING_TABLES = ("sessions", "scenarios", "solutions")
# NULLIF: an unset setting reads as '' (or NULL), which must match no row rather than fail the cast.
CURRENT_USER_ID = "NULLIF(current_setting('app.user_id', true), '')::uuid"


def upgrade() -> None:
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database on this server created it at the same moment
        END
        $$
        """
    )
    # The login role must be able to SET ROLE to the app role (a no-op for a superuser).
    op.execute(f"GRANT {APP_ROLE} TO CURRENT_USER")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    for table in PLANNING_TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_owner ON {table} "
            f"USING (user_id = {CURRENT_USER_ID}) WITH CHECK (user_id = {CURRENT_USER_ID})"
        )


def downgrade() -> None:
    for table in reversed(PLANNING_TABLES):
        op.execute(f"DROP POLICY IF EXISTS {table}_owner ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        op.execute(f"REVOKE ALL ON {table} FROM {APP_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {APP_ROLE}")
    # The role is cluster-wide and may serve other databases on the same server: it is kept.
