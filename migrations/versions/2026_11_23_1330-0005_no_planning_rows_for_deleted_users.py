"""no new planning rows for a deleted (tombstoned) user

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 13:30:00

A request can pass the identity gate an instant before the user's deletion commits and insert a
session an instant after the erase ran; the foreign key is satisfied (the tombstone row stays), so
that session would outlive the user's erasure. This trigger refuses it. Sessions are the root of a
user's tree: a scenario or solution needs a live session (composite foreign keys), and the erase
deletes every session, so guarding this one table closes the window for all three.

SECURITY DEFINER: the request role (routebook_app) has no access to `users`. The error is a
foreign_key_violation, which the planning repository already answers as 404 (the parent is gone).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION refuse_deleted_owner() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        DECLARE
            deleted timestamptz;
        BEGIN
            -- FOR KEY SHARE waits for a deletion in progress (it holds the row FOR UPDATE) and
            -- then reads its committed tombstone; a plain read would see the row as still live.
            SELECT u.deleted_at INTO deleted FROM public.users AS u WHERE u.id = NEW.user_id FOR KEY SHARE;
            IF deleted IS NOT NULL THEN
                RAISE EXCEPTION 'the owner of this row has been deleted' USING ERRCODE = 'foreign_key_violation';
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION refuse_deleted_owner() FROM PUBLIC")
    op.execute(
        "CREATE TRIGGER sessions_owner_not_deleted BEFORE INSERT ON sessions "
        "FOR EACH ROW EXECUTE FUNCTION refuse_deleted_owner()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS sessions_owner_not_deleted ON sessions")
    op.execute("DROP FUNCTION IF EXISTS refuse_deleted_owner()")
