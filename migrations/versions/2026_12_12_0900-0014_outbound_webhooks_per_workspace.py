"""outbound webhooks belong to a workspace: endpoints, deliveries and attempts carry workspace_id

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-12 09:00:00

A personal workspace's id is its user's id, so every existing row moves to its owner's personal
workspace with `workspace_id = user_id`. An endpoint keeps `user_id` as its creator; a delivery and
its attempts are the workspace's alone (a solve's end queues them, whoever ended it), so their
`user_id` goes. Composite foreign keys keep a delivery in its endpoint's workspace and an attempt in
its delivery's.

Row-level security is the planning tables' (migration 0012): the request role sees a row only in
`app.workspace_id` and only while `app.user_id` is a member of it; changes need member or admin, and
a new endpoint must name the request's user as its creator. Every other role is bound to
`app.workspace_id` alone: the solve worker queueing deliveries, and the dispatcher's work on one
delivery (`Database.as_workspace`). The dispatcher role's claim across workspaces is unchanged, and
reads `workspace_id` where it read `user_id`.

Downgrade: endpoints of organisation workspaces go to the members who created them, their
deliveries and attempts with them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "routebook_app"
DISPATCHER_ROLE = "routebook_dispatcher"
TABLES = ("webhook_endpoints", "webhook_deliveries", "webhook_attempts")
CURRENT_USER_ID = "NULLIF(current_setting('app.user_id', true), '')::uuid"
CURRENT_WORKSPACE_ID = "NULLIF(current_setting('app.workspace_id', true), '')::uuid"
ROLE = "(SELECT app_workspace_role())"
READS = f"workspace_id = {CURRENT_WORKSPACE_ID} AND {ROLE} IS NOT NULL"
WRITES = f"workspace_id = {CURRENT_WORKSPACE_ID} AND {ROLE} IN ('admin', 'member')"
SYSTEM = f"current_user <> '{APP_ROLE}' AND workspace_id = {CURRENT_WORKSPACE_ID}"
# Each child's parent: (child, its column naming the parent, the parent's table).
CHILDREN = (
    ("webhook_deliveries", "endpoint_id", "webhook_endpoints"),
    ("webhook_attempts", "delivery_id", "webhook_deliveries"),
)


def _fk_name(child: str, column: str, parent: str) -> str:
    """The composite foreign key's name (the conventional one is too long for the deliveries')."""
    if child == "webhook_deliveries":
        return "fk_webhook_deliveries_endpoint_workspace_webhook_endpoints"
    return f"fk_{child}_{column}_workspace_id_{parent}"


# What the request role may do on each table beyond reading: endpoints are managed; a delivery is
# queued by a member's cancel and replayed; attempts are written by the dispatcher only.
MEMBER_WRITES = {
    "webhook_endpoints": ("insert", "update", "delete"),
    "webhook_deliveries": ("insert", "update"),
    "webhook_attempts": (),
}


def _policies(table: str) -> list[str]:
    return [f"{table}_member_read", *(f"{table}_member_{w}" for w in MEMBER_WRITES[table]), f"{table}_system"]


def upgrade() -> None:
    for table in TABLES:
        # FORCEd RLS binds the migration's role too: the backfill below must see every row.
        op.execute(f"DROP POLICY IF EXISTS {table}_owner ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.add_column(table, sa.Column("workspace_id", sa.Uuid(), nullable=True))
        op.execute(f"UPDATE {table} SET workspace_id = user_id")
        op.alter_column(table, "workspace_id", nullable=False)

    for child, column, parent in reversed(CHILDREN):
        op.drop_constraint(f"fk_{child}_{column}_user_id_{parent}", child, type_="foreignkey")
    op.drop_constraint("uq_webhook_deliveries_id_user_id", "webhook_deliveries", type_="unique")
    op.drop_constraint("uq_webhook_endpoints_id_user_id", "webhook_endpoints", type_="unique")
    for child, _, _ in CHILDREN:
        op.drop_column(child, "user_id")  # the dispatcher's column grant on it goes with it
    op.create_foreign_key(
        op.f("fk_webhook_endpoints_workspace_id_workspaces"),
        "webhook_endpoints",
        "workspaces",
        ["workspace_id"],
        ["id"],
        ondelete="CASCADE",
    )
    for table in ("webhook_endpoints", "webhook_deliveries"):
        op.create_unique_constraint(op.f(f"uq_{table}_id_workspace_id"), table, ["id", "workspace_id"])
    for child, column, parent in CHILDREN:
        op.create_foreign_key(
            op.f(_fk_name(child, column, parent)),
            child,
            parent,
            [column, "workspace_id"],
            ["id", "workspace_id"],
            ondelete="CASCADE",
        )
    op.drop_index("ix_webhook_endpoints_user_id_created_at_id", table_name="webhook_endpoints")
    op.create_index(
        "ix_webhook_endpoints_workspace_id_created_at_id",
        "webhook_endpoints",
        ["workspace_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
    )

    for table in TABLES:
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {table}_member_read ON {table} FOR SELECT TO {APP_ROLE} USING ({READS})")
        writes = MEMBER_WRITES[table]
        if "insert" in writes:
            creator = f" AND user_id = {CURRENT_USER_ID}" if table == "webhook_endpoints" else ""
            op.execute(
                f"CREATE POLICY {table}_member_insert ON {table} FOR INSERT TO {APP_ROLE} "
                f"WITH CHECK ({WRITES}{creator})"
            )
        if "update" in writes:
            op.execute(
                f"CREATE POLICY {table}_member_update ON {table} FOR UPDATE TO {APP_ROLE} "
                f"USING ({WRITES}) WITH CHECK ({WRITES})"
            )
        if "delete" in writes:
            op.execute(
                f"CREATE POLICY {table}_member_delete ON {table} FOR DELETE TO {APP_ROLE} USING ({WRITES})"
            )
        op.execute(f"CREATE POLICY {table}_system ON {table} USING ({SYSTEM}) WITH CHECK ({SYSTEM})")
    # The claim takes turns by workspace.
    op.execute(f"GRANT SELECT (workspace_id) ON webhook_deliveries TO {DISPATCHER_ROLE}")
    # No new endpoint in a deleted organisation's workspace (the function is migration 0012's).
    op.execute(
        "CREATE TRIGGER webhook_endpoints_workspace_not_deleted BEFORE INSERT ON webhook_endpoints "
        "FOR EACH ROW EXECUTE FUNCTION refuse_deleted_workspace()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS webhook_endpoints_workspace_not_deleted ON webhook_endpoints")
    op.execute(f"REVOKE SELECT (workspace_id) ON webhook_deliveries FROM {DISPATCHER_ROLE}")
    for table in TABLES:
        for policy in _policies(table):
            op.execute(f"DROP POLICY IF EXISTS {policy} ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
    # Before workspaces a child's owner was its parent's: an endpoint's creator owns its deliveries.
    for child, column, parent in CHILDREN:
        op.add_column(child, sa.Column("user_id", sa.Uuid(), nullable=True))
        op.execute(f"UPDATE {child} c SET user_id = p.user_id FROM {parent} p WHERE p.id = c.{column}")
        op.alter_column(child, "user_id", nullable=False)
    op.drop_index("ix_webhook_endpoints_workspace_id_created_at_id", table_name="webhook_endpoints")
    for child, column, parent in reversed(CHILDREN):
        op.drop_constraint(_fk_name(child, column, parent), child, type_="foreignkey")
    for table in ("webhook_deliveries", "webhook_endpoints"):
        op.drop_constraint(f"uq_{table}_id_workspace_id", table, type_="unique")
    op.drop_constraint(
        "fk_webhook_endpoints_workspace_id_workspaces", "webhook_endpoints", type_="foreignkey"
    )
    for table in TABLES:
        op.drop_column(table, "workspace_id")
    op.create_unique_constraint("uq_webhook_endpoints_id_user_id", "webhook_endpoints", ["id", "user_id"])
    op.create_unique_constraint("uq_webhook_deliveries_id_user_id", "webhook_deliveries", ["id", "user_id"])
    for child, column, parent in CHILDREN:
        op.create_foreign_key(
            f"fk_{child}_{column}_user_id_{parent}",
            child,
            parent,
            [column, "user_id"],
            ["id", "user_id"],
            ondelete="CASCADE",
        )
    op.create_index(
        "ix_webhook_endpoints_user_id_created_at_id",
        "webhook_endpoints",
        ["user_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
    )
    op.execute(f"GRANT SELECT (user_id) ON webhook_deliveries TO {DISPATCHER_ROLE}")
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_owner ON {table} "
            f"USING (user_id = {CURRENT_USER_ID}) WITH CHECK (user_id = {CURRENT_USER_ID})"
        )
