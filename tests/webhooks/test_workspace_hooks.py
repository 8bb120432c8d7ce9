"""Organisation and membership webhooks keep workspaces true: once only, in event-time order, signed.

Deliveries are shaped like the providers' documented payloads and signed as they sign them
(Clerk: Svix; WorkOS: WorkOS-Signature); what they did is read back from the tables.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import AppFactory, client_for
from tests.kit.sql import SqlAdmin
from tests.webhooks.conftest import CLERK, WEBHOOK_SETTINGS, WORKOS, clerk_signed, ledger_count, workos_signed
from tests.webhooks.test_handlers import post

T1, T2, T3 = 1_700_000_000_000, 1_700_000_100_000, 1_700_000_200_000
ORG = "org_29w9IfBrPmcpi0IeBVaKtA7R94W"
USER = "user_29w83sxmDNGwOuEthce5gg56FcC"
W_ORG = "org_01EHZNVPK3SFK441A1RGBFSHRT"
W_USER = "user_01E4ZCR3C5A4QZ2Z2JQXGKZJ9E"


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


# --- provider-shaped deliveries --------------------------------------------------------------------


def clerk_org_event(kind: str, org_id: str = ORG, *, name: str = "Acme Inc", at: int = T1) -> dict[str, Any]:
    if kind == "organization.deleted":
        data: dict[str, Any] = {"object": "organization", "id": org_id, "deleted": True}
    else:
        data = {
            "object": "organization",
            "id": org_id,
            "name": name,
            "slug": "acme-inc",
            "created_at": T1 - 1000,
            "updated_at": at,
        }
    return {"type": kind, "object": "event", "timestamp": at, "instance_id": "ins_test", "data": data}


def clerk_membership_event(
    kind: str, subject: str = USER, org_id: str = ORG, *, role: str = "org:member", at: int = T1
) -> dict[str, Any]:
    return {
        "type": kind,
        "object": "event",
        "timestamp": at,
        "instance_id": "ins_test",
        "data": {
            "object": "organization_membership",
            "id": f"orgmem_{subject}",
            "role": role,
            "organization": {"object": "organization", "id": org_id, "name": "Acme Inc", "slug": "acme-inc"},
            "public_user_data": {"user_id": subject, "identifier": "x@example.com", "first_name": None},
            "created_at": T1 - 1000,
            "updated_at": at,
        },
    }


def workos_org_event(
    kind: str, org_id: str = W_ORG, *, name: str = "Foo Corp", at: int = T1
) -> dict[str, Any]:
    return {
        "object": "event",
        "id": f"event_{uuid.uuid4().hex}",
        "event": kind,
        "created_at": iso(at),
        "data": {
            "object": "organization",
            "id": org_id,
            "name": name,
            "domains": [],
            "created_at": iso(T1 - 1000),
            "updated_at": iso(at),
        },
    }


def workos_membership_event(
    kind: str,
    subject: str = W_USER,
    org_id: str = W_ORG,
    *,
    role: str = "member",
    status: str = "active",
    at: int = T1,
) -> dict[str, Any]:
    return {
        "object": "event",
        "id": f"event_{uuid.uuid4().hex}",
        "event": kind,
        "created_at": iso(at),
        "data": {
            "object": "organization_membership",
            "id": f"om_{subject}",
            "user_id": subject,
            "organization_id": org_id,
            "role": {"slug": role},
            "status": status,
            "created_at": iso(T1 - 1000),
            "updated_at": iso(at),
        },
    }


# --- what the tables hold --------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkspaceRow:
    id: uuid.UUID
    name: str
    deleted: bool


async def workspace_row(db: SqlAdmin, provider: str, org_id: str) -> WorkspaceRow | None:
    async with db.transaction() as session:
        row = (
            await session.execute(
                text(
                    "SELECT id, name, deleted_at FROM workspaces "
                    "WHERE provider = :provider AND provider_org_id = :org"
                ),
                {"provider": provider, "org": org_id},
            )
        ).first()
    return None if row is None else WorkspaceRow(row.id, row.name, row.deleted_at is not None)


async def role_in(db: SqlAdmin, provider: str, org_id: str, subject: str) -> str | None:
    """The member's role; None when removed or never a member."""
    async with db.transaction() as session:
        return (
            await session.execute(
                text(
                    "SELECT m.role FROM memberships m "
                    "JOIN workspaces w ON w.id = m.workspace_id JOIN users u ON u.id = m.user_id "
                    "WHERE w.provider = :provider AND w.provider_org_id = :org AND u.subject = :subject"
                ),
                {"provider": provider, "org": org_id, "subject": subject},
            )
        ).scalar_one_or_none()


# --- each event type -------------------------------------------------------------------------------


async def test_clerk_organization_lifecycle(hooks: httpx.AsyncClient, clean_db: SqlAdmin) -> None:
    await post(hooks, CLERK, clerk_signed(clerk_org_event("organization.created", at=T1)))
    created = await workspace_row(clean_db, "clerk", ORG)
    assert created is not None and (created.name, created.deleted) == ("Acme Inc", False)

    await post(hooks, CLERK, clerk_signed(clerk_org_event("organization.updated", name="Acme Ltd", at=T2)))
    renamed = await workspace_row(clean_db, "clerk", ORG)
    assert renamed == WorkspaceRow(created.id, "Acme Ltd", False)

    await post(hooks, CLERK, clerk_signed(clerk_org_event("organization.deleted", at=T3)))
    deleted = await workspace_row(clean_db, "clerk", ORG)
    assert deleted is not None and deleted.id == created.id and deleted.deleted
    assert await ledger_count(clean_db) == 3


@pytest.mark.parametrize(
    ("role", "expected"),
    [("org:admin", "admin"), ("org:member", "member"), ("org:billing_manager", "viewer")],
)
async def test_clerk_membership_lifecycle(
    role: str, expected: str, hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    await post(
        hooks, CLERK, clerk_signed(clerk_membership_event("organizationMembership.created", role=role))
    )
    assert await role_in(clean_db, "clerk", ORG, USER) == expected

    await post(
        hooks,
        CLERK,
        clerk_signed(clerk_membership_event("organizationMembership.updated", role="org:admin", at=T2)),
    )
    assert await role_in(clean_db, "clerk", ORG, USER) == "admin"

    await post(hooks, CLERK, clerk_signed(clerk_membership_event("organizationMembership.deleted", at=T3)))
    assert await role_in(clean_db, "clerk", ORG, USER) is None


async def test_workos_organization_lifecycle(hooks: httpx.AsyncClient, clean_db: SqlAdmin) -> None:
    await post(hooks, WORKOS, workos_signed(workos_org_event("organization.created", at=T1)))
    created = await workspace_row(clean_db, "workos", W_ORG)
    assert created is not None and (created.name, created.deleted) == ("Foo Corp", False)

    await post(hooks, WORKOS, workos_signed(workos_org_event("organization.updated", name="Foo Inc", at=T2)))
    assert await workspace_row(clean_db, "workos", W_ORG) == WorkspaceRow(created.id, "Foo Inc", False)

    await post(hooks, WORKOS, workos_signed(workos_org_event("organization.deleted", at=T3)))
    deleted = await workspace_row(clean_db, "workos", W_ORG)
    assert deleted is not None and deleted.deleted


async def test_workos_membership_lifecycle(hooks: httpx.AsyncClient, clean_db: SqlAdmin) -> None:
    await post(
        hooks, WORKOS, workos_signed(workos_membership_event("organization_membership.created", role="admin"))
    )
    assert await role_in(clean_db, "workos", W_ORG, W_USER) == "admin"

    await post(
        hooks,
        WORKOS,
        workos_signed(workos_membership_event("organization_membership.updated", role="auditor", at=T2)),
    )
    assert await role_in(clean_db, "workos", W_ORG, W_USER) == "viewer"  # not in the role map

    # Deactivated: no access, though WorkOS still lists the membership.
    await post(
        hooks,
        WORKOS,
        workos_signed(workos_membership_event("organization_membership.updated", status="inactive", at=T3)),
    )
    assert await role_in(clean_db, "workos", W_ORG, W_USER) is None

    await post(
        hooks,
        WORKOS,
        workos_signed(
            workos_membership_event("organization_membership.updated", role="member", at=T3 + 1000)
        ),
    )
    assert await role_in(clean_db, "workos", W_ORG, W_USER) == "member"

    await post(
        hooks, WORKOS, workos_signed(workos_membership_event("organization_membership.deleted", at=T3 + 2000))
    )
    assert await role_in(clean_db, "workos", W_ORG, W_USER) is None


async def test_role_map_setting_is_applied(app_factory: AppFactory, clean_db: SqlAdmin) -> None:
    settings = {**WEBHOOK_SETTINGS, "clerk_org_role_map": "admin=admin,member=viewer,billing_manager=member"}
    async with app_factory(**settings) as app, client_for(app) as client:
        for subject, role in (
            ("user_a", "org:member"),
            ("user_b", "org:billing_manager"),
            ("user_c", "org:x"),
        ):
            event = clerk_membership_event("organizationMembership.created", subject, role=role)
            await post(client, CLERK, clerk_signed(event))
    assert await role_in(clean_db, "clerk", ORG, "user_a") == "viewer"
    assert await role_in(clean_db, "clerk", ORG, "user_b") == "member"
    assert await role_in(clean_db, "clerk", ORG, "user_c") == "viewer"


# --- once, in order ----------------------------------------------------------------------------------


async def test_a_duplicate_delivery_is_applied_once(hooks: httpx.AsyncClient, clean_db: SqlAdmin) -> None:
    delivery = clerk_signed(clerk_membership_event("organizationMembership.created", role="org:admin"))
    await post(hooks, CLERK, delivery)
    # Make a second application observable: were it applied again, the role would be admin again.
    async with clean_db.transaction() as session:
        await session.execute(
            text("UPDATE memberships SET role = 'viewer', event_at = NULL WHERE role = 'admin'")
        )
    await post(hooks, CLERK, delivery)
    assert await role_in(clean_db, "clerk", ORG, USER) == "viewer"
    assert await ledger_count(clean_db) == 1


@pytest.mark.parametrize("provider", ["clerk", "workos"])
async def test_concurrent_copies_have_one_effect(
    provider: str, hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    if provider == "clerk":
        path, (body, headers) = CLERK, clerk_signed(clerk_membership_event("organizationMembership.created"))
    else:
        path, (body, headers) = (
            WORKOS,
            workos_signed(workos_membership_event("organization_membership.created")),
        )
    responses = await asyncio.gather(*(hooks.post(path, content=body, headers=headers) for _ in range(4)))
    assert [r.status_code for r in responses] == [204] * 4
    assert await ledger_count(clean_db) == 1
    async with clean_db.transaction() as session:
        count = (
            await session.execute(
                text("SELECT count(*) FROM workspaces WHERE provider = :p"), {"p": provider}
            )
        ).scalar_one()
    assert count == 1


async def test_an_older_role_change_after_a_newer_one_is_ignored(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    await post(
        hooks,
        CLERK,
        clerk_signed(clerk_membership_event("organizationMembership.updated", role="org:member", at=T2)),
    )
    await post(
        hooks,
        CLERK,
        clerk_signed(clerk_membership_event("organizationMembership.created", role="org:admin", at=T1)),
    )
    assert await role_in(clean_db, "clerk", ORG, USER) == "member"


async def test_a_removal_wins_over_an_older_created_arriving_late(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    await post(
        hooks, WORKOS, workos_signed(workos_membership_event("organization_membership.deleted", at=T2))
    )
    await post(
        hooks,
        WORKOS,
        workos_signed(workos_membership_event("organization_membership.created", role="admin", at=T1)),
    )
    assert await role_in(clean_db, "workos", W_ORG, W_USER) is None
    # A re-add after the removal does apply.
    await post(
        hooks,
        WORKOS,
        workos_signed(workos_membership_event("organization_membership.created", role="admin", at=T3)),
    )
    assert await role_in(clean_db, "workos", W_ORG, W_USER) == "admin"


async def test_an_older_rename_after_a_newer_one_is_ignored(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    await post(hooks, CLERK, clerk_signed(clerk_org_event("organization.updated", name="New name", at=T2)))
    await post(hooks, CLERK, clerk_signed(clerk_org_event("organization.created", name="Old name", at=T1)))
    row = await workspace_row(clean_db, "clerk", ORG)
    assert row is not None and row.name == "New name"


async def test_a_membership_before_its_organisation_creates_it_and_the_organisation_names_it(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    await post(hooks, CLERK, clerk_signed(clerk_membership_event("organizationMembership.created", at=T2)))
    first = await workspace_row(clean_db, "clerk", ORG)
    assert first is not None and not first.deleted
    assert await role_in(clean_db, "clerk", ORG, USER) == "member"
    # organization.created is older than the membership but is the first organisation event: it names it.
    await post(hooks, CLERK, clerk_signed(clerk_org_event("organization.created", name="Acme Inc", at=T1)))
    assert await workspace_row(clean_db, "clerk", ORG) == WorkspaceRow(first.id, "Acme Inc", False)
    assert await role_in(clean_db, "clerk", ORG, USER) == "member"


async def test_a_deleted_organisation_is_never_brought_back(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    await post(hooks, CLERK, clerk_signed(clerk_membership_event("organizationMembership.created", at=T1)))
    await post(hooks, CLERK, clerk_signed(clerk_org_event("organization.deleted", at=T2)))
    # Late (and even later-dated) events about it change nothing.
    await post(hooks, CLERK, clerk_signed(clerk_org_event("organization.updated", name="Zombie", at=T3)))
    await post(
        hooks,
        CLERK,
        clerk_signed(clerk_membership_event("organizationMembership.updated", role="org:admin", at=T3)),
    )
    row = await workspace_row(clean_db, "clerk", ORG)
    assert row is not None and row.deleted and row.name != "Zombie"
    assert await role_in(clean_db, "clerk", ORG, USER) is None


async def test_a_membership_of_a_deleted_user_changes_nothing(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    await post(
        hooks,
        CLERK,
        clerk_signed(
            {
                "type": "user.deleted",
                "object": "event",
                "timestamp": T1,
                "data": {"id": USER, "deleted": True},
            }
        ),
    )
    await post(hooks, CLERK, clerk_signed(clerk_membership_event("organizationMembership.created", at=T2)))
    assert await role_in(clean_db, "clerk", ORG, USER) is None


# --- signed, and never a 500 ---------------------------------------------------------------------------


async def test_a_forged_membership_event_is_401_and_changes_nothing(
    hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    event = clerk_membership_event("organizationMembership.created", role="org:admin")
    body, headers = clerk_signed(event, secret="whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=")
    assert (await hooks.post(CLERK, content=body, headers=headers)).status_code == 401
    body, headers = workos_signed(workos_membership_event("organization_membership.created"), secret="wrong")
    assert (await hooks.post(WORKOS, content=body, headers=headers)).status_code == 401
    assert await ledger_count(clean_db) == 0
    async with clean_db.transaction() as session:
        assert (
            await session.execute(text("SELECT count(*) FROM workspaces WHERE kind = 'organization'"))
        ).scalar_one() == 0


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        (CLERK, {"type": "organizationMembership.created", "data": {"role": "org:admin"}}),
        (CLERK, {"type": "organization.created", "timestamp": "later", "data": {"id": "org_x"}}),
        (CLERK, {"type": "organizationMembership.deleted", "data": {"organization": {"id": "org_x"}}}),
        (WORKOS, {"id": "e1", "event": "organization_membership.created", "data": {"user_id": "u"}}),
        (WORKOS, {"id": "e2", "event": "organization.deleted", "data": {"name": "no id"}}),
        (WORKOS, {"id": "e3", "event": "session.revoked", "data": {"id": "session_1"}}),
    ],
)
async def test_a_signed_but_malformed_event_is_400(
    path: str, payload: dict[str, Any], hooks: httpx.AsyncClient, clean_db: SqlAdmin
) -> None:
    body, headers = clerk_signed(payload) if path == CLERK else workos_signed(payload)
    response = await hooks.post(path, content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert await ledger_count(clean_db) == 0
