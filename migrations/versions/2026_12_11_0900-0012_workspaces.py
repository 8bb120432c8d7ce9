"""workspaces own planning data: workspaces, memberships, and row-level security by (workspace, member)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-11 09:00:00

A personal workspace's id is its user's id, so every existing row moves to its owner's personal
workspace with `workspace_id = user_id`, and `user_id` stays as the row's creator. A trigger on
`users` creates the personal workspace and its admin membership in the same transaction as the
user, whichever path inserts the user (first sight of a token, a webhook, a tombstone), so it is
race-free.

Row-level security binds a request to (workspace, member): the request role (`routebook_app`) sees
a planning row only when its `workspace_id` is `app.workspace_id` AND `app.user_id` holds a live
membership of that workspace (`app_workspace_role()`, STABLE SECURITY DEFINER: the request role
cannot read `memberships`; it takes no row argument and is called as `(SELECT …)`, an InitPlan
evaluated once per statement). Writes need role member or admin, and an insert must name the
request's user as creator. Setting `app.workspace_id` alone opens nothing. Every other role (the
login role's system work, which is privileged by nature: it owns the tables) is bound to
`app.workspace_id` alone.

Outbound webhook tables stay per user (their endpoints belong to the user who made them).

Downgrade: rows of organisation workspaces go back to their sessions' creators.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "routebook_app"
SWEEPER_ROLE = "routebook_sweeper"
PLANNING_TABLES = ("sessions", "scenarios", "solutions")
CURRENT_USER_ID = "NULLIF(current_setting('app.user_id', true), '')::uuid"
CURRENT_WORKSPACE_ID = "NULLIF(current_setting('app.workspace_id', true), '')::uuid"
ROLE = "(SELECT app_workspace_role())"
READS = f"workspace_id = {CURRENT_WORKSPACE_ID} AND {ROLE} IS NOT NULL"
WRITES = f"workspace_id = {CURRENT_WORKSPACE_ID} AND {ROLE} IN ('admin', 'member')"
SYSTEM = f"current_user <> '{APP_ROLE}' AND workspace_id = {CURRENT_WORKSPACE_ID}"
# The parent's (table, column) for each child's composite foreign key.
PARENTS = {"scenarios": ("sessions", "session_id"), "solutions": ("scenarios", "scenario_id")}


def _timestamp(name: str, *, nullable: bool = False, default: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        server_default=sa.text("now()") if default else None,
        nullable=nullable,
    )


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=True),
        sa.Column("provider_org_id", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        _timestamp("provider_updated_at", nullable=True),
        _timestamp("deleted_at", nullable=True),
        _timestamp("created_at", default=True),
        _timestamp("updated_at", default=True),
        sa.CheckConstraint("kind IN ('personal', 'organization')", name=op.f("ck_workspaces_kind")),
        sa.CheckConstraint(
            "(provider IS NULL) = (provider_org_id IS NULL)", name=op.f("ck_workspaces_provider_pair")
        ),
        sa.CheckConstraint(
            "kind = 'organization' OR provider IS NULL", name=op.f("ck_workspaces_personal_has_no_provider")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_workspaces_created_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspaces")),
        sa.UniqueConstraint(
            "provider", "provider_org_id", name=op.f("uq_workspaces_provider_provider_org_id")
        ),
    )
    op.create_table(
        "memberships",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.Text(), nullable=True),
        _timestamp("event_at", nullable=True),
        _timestamp("created_at", default=True),
        _timestamp("updated_at", default=True),
        sa.CheckConstraint("role IN ('admin', 'member', 'viewer')", name=op.f("ck_memberships_role")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_memberships_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_memberships_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "user_id", name=op.f("pk_memberships")),
    )
    op.create_index(op.f("ix_memberships_user_id"), "memberships", ["user_id"])

    # Every user has a personal workspace whose id is theirs, with an admin membership.
    op.execute(
        """
        CREATE FUNCTION create_personal_workspace() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        BEGIN
            INSERT INTO public.workspaces (id, kind, name, created_by, created_at, updated_at)
            VALUES (NEW.id, 'personal', 'Personal', NEW.id, NEW.created_at, NEW.created_at);
            INSERT INTO public.memberships (workspace_id, user_id, role, created_at, updated_at)
            VALUES (NEW.id, NEW.id, 'admin', NEW.created_at, NEW.created_at);
            RETURN NEW;
        END
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION create_personal_workspace() FROM PUBLIC")
    op.execute(
        "CREATE TRIGGER users_personal_workspace AFTER INSERT ON users "
        "FOR EACH ROW EXECUTE FUNCTION create_personal_workspace()"
    )
    op.execute(
        "INSERT INTO workspaces (id, kind, name, created_by, created_at, updated_at) "
        "SELECT id, 'personal', 'Personal', id, created_at, created_at FROM users"
    )
    op.execute(
        "INSERT INTO memberships (workspace_id, user_id, role, created_at, updated_at) "
        "SELECT id, id, 'admin', created_at, created_at FROM users"
    )

    # The request's role in its workspace; NULL when not a member (or removed, or the workspace is
    # deleted). SECURITY DEFINER: the request role has no access to memberships. Not inlinable (SET),
    # so `(SELECT app_workspace_role())` in a policy is one InitPlan per statement.
    op.execute(
        f"""
        CREATE FUNCTION app_workspace_role() RETURNS text
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
            SELECT m.role FROM public.memberships AS m JOIN public.workspaces AS w ON w.id = m.workspace_id
            WHERE m.workspace_id = {CURRENT_WORKSPACE_ID}
              AND m.user_id = {CURRENT_USER_ID}
              AND w.deleted_at IS NULL
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION app_workspace_role() FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION app_workspace_role() TO {APP_ROLE}")

    for table in PLANNING_TABLES:
        # FORCEd RLS binds the migration's role too: the backfill below must see every row.
        op.execute(f"DROP POLICY IF EXISTS {table}_owner ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.add_column(table, sa.Column("workspace_id", sa.Uuid(), nullable=True))
        op.execute(f"UPDATE {table} SET workspace_id = user_id")
        op.alter_column(table, "workspace_id", nullable=False)
    op.add_column("stream_tickets", sa.Column("workspace_id", sa.Uuid(), nullable=True))
    op.execute("UPDATE stream_tickets SET workspace_id = user_id")
    op.alter_column("stream_tickets", "workspace_id", nullable=False)

    # Children follow their parent's workspace, not their creator: members edit each other's rows.
    for child, (parent, column) in PARENTS.items():
        op.drop_constraint(f"fk_{child}_{column}_user_id_{parent}", child, type_="foreignkey")
    op.drop_constraint("uq_scenarios_id_user_id", "scenarios", type_="unique")
    op.drop_constraint("uq_sessions_id_user_id", "sessions", type_="unique")
    op.create_foreign_key(
        op.f("fk_sessions_workspace_id_workspaces"),
        "sessions",
        "workspaces",
        ["workspace_id"],
        ["id"],
        ondelete="CASCADE",
    )
    for table in ("sessions", "scenarios"):
        op.create_unique_constraint(op.f(f"uq_{table}_id_workspace_id"), table, ["id", "workspace_id"])
    for child, (parent, column) in PARENTS.items():
        op.create_foreign_key(
            op.f(f"fk_{child}_{column}_workspace_id_{parent}"),
            child,
            parent,
            [column, "workspace_id"],
            ["id", "workspace_id"],
            ondelete="CASCADE",
        )
    op.drop_index("ix_sessions_user_id_created_at_id", table_name="sessions")
    op.create_index(
        "ix_sessions_workspace_id_created_at_id",
        "sessions",
        ["workspace_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
    )
    op.create_index(
        "ix_solutions_workspace_id_active",
        "solutions",
        ["workspace_id"],
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )
    # A child's parent determines its workspace (see migration 0008).
    op.execute("DROP STATISTICS IF EXISTS scenarios_session_id_user_id")
    op.execute("DROP STATISTICS IF EXISTS solutions_scenario_id_user_id")
    op.execute(
        "CREATE STATISTICS scenarios_session_id_workspace_id (dependencies) ON session_id, workspace_id FROM scenarios"
    )
    op.execute(
        "CREATE STATISTICS solutions_scenario_id_workspace_id (dependencies) ON scenario_id, workspace_id FROM solutions"
    )

    for table in PLANNING_TABLES:
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {table}_member_read ON {table} FOR SELECT TO {APP_ROLE} USING ({READS})")
        op.execute(
            f"CREATE POLICY {table}_member_insert ON {table} FOR INSERT TO {APP_ROLE} "
            f"WITH CHECK ({WRITES} AND user_id = {CURRENT_USER_ID})"
        )
        op.execute(
            f"CREATE POLICY {table}_member_update ON {table} FOR UPDATE TO {APP_ROLE} "
            f"USING ({WRITES}) WITH CHECK ({WRITES})"
        )
        op.execute(
            f"CREATE POLICY {table}_member_delete ON {table} FOR DELETE TO {APP_ROLE} USING ({WRITES})"
        )
        op.execute(f"CREATE POLICY {table}_system ON {table} USING ({SYSTEM}) WITH CHECK ({SYSTEM})")
        op.execute(f"ANALYZE {table}")
    # The sweeper ends a stranded solve in its workspace.
    op.execute(f"GRANT SELECT (workspace_id) ON solutions TO {SWEEPER_ROLE}")

    # Like a deleted user (migration 0005): no new rows in a deleted organisation's workspace. The
    # deletion locks the workspace row FOR UPDATE first, so an insert in flight commits before the
    # erase, and a later one reads the tombstone here.
    op.execute(
        """
        CREATE FUNCTION refuse_deleted_workspace() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        DECLARE
            deleted timestamptz;
        BEGIN
            SELECT w.deleted_at INTO deleted FROM public.workspaces AS w WHERE w.id = NEW.workspace_id FOR KEY SHARE;
            IF deleted IS NOT NULL THEN
                RAISE EXCEPTION 'this workspace has been deleted' USING ERRCODE = 'foreign_key_violation';
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION refuse_deleted_workspace() FROM PUBLIC")
    op.execute(
        "CREATE TRIGGER sessions_workspace_not_deleted BEFORE INSERT ON sessions "
        "FOR EACH ROW EXECUTE FUNCTION refuse_deleted_workspace()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS sessions_workspace_not_deleted ON sessions")
    op.execute("DROP FUNCTION IF EXISTS refuse_deleted_workspace()")
    op.execute(f"REVOKE SELECT (workspace_id) ON solutions FROM {SWEEPER_ROLE}")
    for table in PLANNING_TABLES:
        for policy in ("member_read", "member_insert", "member_update", "member_delete", "system"):
            op.execute(f"DROP POLICY IF EXISTS {table}_{policy} ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
    op.execute("DROP STATISTICS IF EXISTS scenarios_session_id_workspace_id")
    op.execute("DROP STATISTICS IF EXISTS solutions_scenario_id_workspace_id")
    op.drop_index("ix_solutions_workspace_id_active", table_name="solutions")
    op.drop_index("ix_sessions_workspace_id_created_at_id", table_name="sessions")
    for child, (parent, column) in PARENTS.items():
        op.drop_constraint(f"fk_{child}_{column}_workspace_id_{parent}", child, type_="foreignkey")
    for table in ("sessions", "scenarios"):
        op.drop_constraint(f"uq_{table}_id_workspace_id", table, type_="unique")
    op.drop_constraint("fk_sessions_workspace_id_workspaces", "sessions", type_="foreignkey")
    # Rows of organisation workspaces go to their session's creator, so a child's owner is its parent's.
    op.execute(
        "UPDATE scenarios c SET user_id = s.user_id FROM sessions s WHERE s.id = c.session_id AND c.user_id <> s.user_id"
    )
    op.execute(
        "UPDATE solutions o SET user_id = c.user_id FROM scenarios c WHERE c.id = o.scenario_id AND o.user_id <> c.user_id"
    )
    op.create_unique_constraint("uq_sessions_id_user_id", "sessions", ["id", "user_id"])
    op.create_unique_constraint("uq_scenarios_id_user_id", "scenarios", ["id", "user_id"])
    for child, (parent, column) in PARENTS.items():
        op.create_foreign_key(
            f"fk_{child}_{column}_user_id_{parent}",
            child,
            parent,
            [column, "user_id"],
            ["id", "user_id"],
            ondelete="CASCADE",
        )
    op.create_index(
        "ix_sessions_user_id_created_at_id",
        "sessions",
        ["user_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
    )
    op.execute(
        "CREATE STATISTICS scenarios_session_id_user_id (dependencies) ON session_id, user_id FROM scenarios"
    )
    op.execute(
        "CREATE STATISTICS solutions_scenario_id_user_id (dependencies) ON scenario_id, user_id FROM solutions"
    )
    op.drop_column("stream_tickets", "workspace_id")
    for table in PLANNING_TABLES:
        op.drop_column(table, "workspace_id")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_owner ON {table} "
            f"USING (user_id = {CURRENT_USER_ID}) WITH CHECK (user_id = {CURRENT_USER_ID})"
        )
    op.execute("DROP FUNCTION IF EXISTS app_workspace_role()")
    op.execute("DROP TRIGGER IF EXISTS users_personal_workspace ON users")
    op.execute("DROP FUNCTION IF EXISTS create_personal_workspace()")
    op.drop_index(op.f("ix_memberships_user_id"), table_name="memberships")
    op.drop_table("memberships")
    op.drop_table("workspaces")
