"""Parsing Clerk's and WorkOS's organisation, membership and session events into neutral events.

The bodies are shaped like the providers' documented payloads: Clerk's Organization and
OrganizationMembership objects (role "org:<key>", the user in `public_user_data.user_id`), WorkOS's
Organization and OrganizationMembership objects (`organization_id`, `user_id`, `role.slug`,
`status`) and Session object (`id`, `user_id`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from service.providers.clerk import parse_clerk
from service.providers.events import MalformedPayload, MembershipEvent, OrganizationEvent, UserEvent
from service.providers.workos import parse_workos

SENT_MS = 1_700_000_000_999


def ms(value: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


# --- Clerk -------------------------------------------------------------------------------------


def clerk_org(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "object": "organization",
        "id": "org_29w9IfBrPmcpi0IeBVaKtA7R94W",
        "name": "Acme Inc",
        "slug": "acme-inc",
        "created_by": "user_1vq84bqWzw7qmFgqSwN4CH1Wp0n",
        "public_metadata": {},
        "created_at": 1654013202977,
        "updated_at": 1654013567994,
    }
    return data | overrides


def clerk_membership(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "object": "organization_membership",
        "id": "orgmem_29wAbjiJs6aZuPq7AzmkW9dwmyl",
        "role": "org:member",
        "organization": clerk_org(),
        "public_user_data": {
            "identifier": "example@example.org",
            "first_name": None,
            "last_name": None,
            "user_id": "user_29w83sxmDNGwOuEthce5gg56FcC",
        },
        "created_at": 1654013847054,
        "updated_at": 1654013847054,
    }
    return data | overrides


def clerk_envelope(event_type: str, data: dict[str, Any], **extra: Any) -> bytes:
    return dumps({"type": event_type, "object": "event", "timestamp": SENT_MS, "data": data} | extra)


@pytest.mark.parametrize("event_type", ["organization.created", "organization.updated"])
def test_clerk_organization_upsert(event_type: str) -> None:
    event = parse_clerk(clerk_envelope(event_type, clerk_org()), "msg_o1")
    assert event == OrganizationEvent(
        kind="upsert",
        provider="clerk",
        event_id="msg_o1",
        event_type=event_type,
        org_id="org_29w9IfBrPmcpi0IeBVaKtA7R94W",
        name="Acme Inc",
        occurred_at=ms(SENT_MS),
    )


def test_clerk_organization_deleted_is_dated_by_the_envelope() -> None:
    body = clerk_envelope(
        "organization.deleted", {"object": "organization", "id": "org_gone", "deleted": True}
    )
    event = parse_clerk(body, "msg_o2")
    assert event == OrganizationEvent(
        "delete", "clerk", "msg_o2", "organization.deleted", "org_gone", None, ms(SENT_MS)
    )


def test_clerk_event_time_falls_back_to_updated_at() -> None:
    body = dumps({"type": "organizationMembership.updated", "data": clerk_membership()})
    event = parse_clerk(body, "m")
    assert isinstance(event, MembershipEvent) and event.occurred_at == ms(1654013847054)


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("org:admin", "admin"),
        ("org:member", "member"),
        ("org:billing_manager", "billing_manager"),
        (None, None),
    ],
)
@pytest.mark.parametrize("event_type", ["organizationMembership.created", "organizationMembership.updated"])
def test_clerk_membership_upsert(event_type: str, role: str | None, expected: str | None) -> None:
    event = parse_clerk(clerk_envelope(event_type, clerk_membership(role=role)), "msg_m1")
    assert event == MembershipEvent(
        kind="upsert",
        provider="clerk",
        event_id="msg_m1",
        event_type=event_type,
        org_id="org_29w9IfBrPmcpi0IeBVaKtA7R94W",
        subject="user_29w83sxmDNGwOuEthce5gg56FcC",
        role=expected,
        occurred_at=ms(SENT_MS),
    )


def test_clerk_membership_deleted() -> None:
    event = parse_clerk(clerk_envelope("organizationMembership.deleted", clerk_membership()), "msg_m2")
    assert isinstance(event, MembershipEvent)
    assert (event.kind, event.org_id, event.subject, event.role) == (
        "delete",
        "org_29w9IfBrPmcpi0IeBVaKtA7R94W",
        "user_29w83sxmDNGwOuEthce5gg56FcC",
        None,
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(clerk_envelope("organization.created", clerk_org(id=None)), id="org-no-id"),
        pytest.param(clerk_envelope("organization.created", clerk_org(id="o\x00")), id="org-id-nul"),
        pytest.param(clerk_envelope("organization.deleted", {"deleted": True}), id="deleted-no-id"),
        pytest.param(clerk_envelope("organization.updated", clerk_org(name=7)), id="name-int"),
        pytest.param(
            clerk_envelope("organization.updated", clerk_org(), timestamp="soon"), id="timestamp-string"
        ),
        pytest.param(
            clerk_envelope("organization.updated", clerk_org(), timestamp=10**14), id="timestamp-future"
        ),
        pytest.param(
            clerk_envelope("organizationMembership.created", clerk_membership(organization=None)),
            id="membership-no-org",
        ),
        pytest.param(
            clerk_envelope("organizationMembership.created", clerk_membership(organization={"name": "x"})),
            id="membership-org-no-id",
        ),
        pytest.param(
            clerk_envelope("organizationMembership.created", clerk_membership(public_user_data={})),
            id="membership-no-user",
        ),
        pytest.param(
            clerk_envelope("organizationMembership.created", clerk_membership(role=["org:admin"])),
            id="role-list",
        ),
        pytest.param(
            clerk_envelope("organizationMembership.created", clerk_membership(role="org:")), id="role-empty"
        ),
        pytest.param(
            clerk_envelope("organizationMembership.created", clerk_membership(role="org:" + "x" * 300)),
            id="role-long",
        ),
    ],
)
def test_clerk_org_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        parse_clerk(body, "msg_bad")


# --- WorkOS ------------------------------------------------------------------------------------


def workos_envelope(event_type: str, data: dict[str, Any], **extra: Any) -> bytes:
    return dumps(
        {
            "object": "event",
            "id": "event_01ORG",
            "event": event_type,
            "data": data,
            "created_at": "2024-02-03T04:05:07.000Z",
        }
        | extra
    )


def workos_org(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "object": "organization",
        "id": "org_01EHZNVPK3SFK441A1RGBFSHRT",
        "name": "Foo Corp",
        "domains": [],
        "created_at": "2021-06-25T19:07:33.155Z",
        "updated_at": "2021-06-25T19:07:33.155Z",
    }
    return data | overrides


def workos_membership(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "object": "organization_membership",
        "id": "om_01E4ZCR3C56J083X43JQXF3JK5",
        "user_id": "user_01E4ZCR3C5A4QZ2Z2JQXGKZJ9E",
        "organization_id": "org_01E4ZCR3C56J083X43JQXF3JK5",
        "role": {"slug": "admin"},
        "status": "active",
        "created_at": "2021-06-25T19:07:33.155Z",
        "updated_at": "2021-06-25T19:07:33.155Z",
    }
    return data | overrides


WORKOS_SENT = datetime(2024, 2, 3, 4, 5, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    "event_type", ["organization.created", "organization.updated", "organization.deleted"]
)
def test_workos_organization(event_type: str) -> None:
    event = parse_workos(workos_envelope(event_type, workos_org()))
    deleted = event_type == "organization.deleted"
    assert event == OrganizationEvent(
        kind="delete" if deleted else "upsert",
        provider="workos",
        event_id="event_01ORG",
        event_type=event_type,
        org_id="org_01EHZNVPK3SFK441A1RGBFSHRT",
        name=None if deleted else "Foo Corp",
        occurred_at=WORKOS_SENT,
    )


@pytest.mark.parametrize(
    ("overrides", "kind", "role"),
    [
        pytest.param({}, "upsert", "admin", id="active-admin"),
        pytest.param({"role": {"slug": "member"}}, "upsert", "member", id="active-member"),
        pytest.param({"role": None, "roles": [{"slug": "auditor"}]}, "upsert", "auditor", id="roles-list"),
        pytest.param({"role": None}, "upsert", None, id="no-role"),
        pytest.param({"status": "inactive"}, "delete", None, id="deactivated"),
        pytest.param({"status": "pending"}, "delete", None, id="invited-not-accepted"),
    ],
)
@pytest.mark.parametrize("event_type", ["organization_membership.created", "organization_membership.updated"])
def test_workos_membership(event_type: str, overrides: dict[str, Any], kind: str, role: str | None) -> None:
    event = parse_workos(workos_envelope(event_type, workos_membership(**overrides)))
    assert event == MembershipEvent(
        kind=kind,  # type: ignore[arg-type]
        provider="workos",
        event_id="event_01ORG",
        event_type=event_type,
        org_id="org_01E4ZCR3C56J083X43JQXF3JK5",
        subject="user_01E4ZCR3C5A4QZ2Z2JQXGKZJ9E",
        role=role,
        occurred_at=WORKOS_SENT,
    )


def test_workos_membership_deleted_even_when_active() -> None:
    event = parse_workos(workos_envelope("organization_membership.deleted", workos_membership()))
    assert isinstance(event, MembershipEvent) and (event.kind, event.role) == ("delete", None)


def test_workos_event_time_falls_back_to_updated_at() -> None:
    body = dumps({"id": "e", "event": "organization.updated", "data": workos_org()})
    event = parse_workos(body)
    assert isinstance(event, OrganizationEvent)
    assert event.occurred_at == datetime(2021, 6, 25, 19, 7, 33, 155000, tzinfo=UTC)


def test_workos_session_revoked() -> None:
    session = {
        "object": "session",
        "id": "session_01H93ZY4F80QPBEZ1R5B2SHQG8",
        "user_id": "user_01E4ZCR3C5A4QZ2Z2JQXGKZJ9E",
        "organization_id": None,
        "status": "revoked",
        "auth_method": "password",
    }
    event = parse_workos(workos_envelope("session.revoked", session))
    assert isinstance(event, UserEvent)
    assert (event.kind, event.session_id, event.subject, event.event_id) == (
        "session_revoked",
        "session_01H93ZY4F80QPBEZ1R5B2SHQG8",
        "user_01E4ZCR3C5A4QZ2Z2JQXGKZJ9E",
        "event_01ORG",
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(workos_envelope("organization.created", workos_org(id=None)), id="org-no-id"),
        pytest.param(
            workos_envelope("organization.created", workos_org(), created_at="yesterday"), id="bad-created-at"
        ),
        pytest.param(
            workos_envelope("organization.created", workos_org(), created_at="2999-01-01T00:00:00Z"),
            id="future",
        ),
        pytest.param(
            workos_envelope("organization_membership.created", workos_membership(organization_id=None)),
            id="membership-no-org",
        ),
        pytest.param(
            workos_envelope("organization_membership.created", workos_membership(user_id=5)),
            id="membership-user-int",
        ),
        pytest.param(
            workos_envelope("organization_membership.created", workos_membership(role="admin")),
            id="role-string",
        ),
        pytest.param(
            workos_envelope("organization_membership.created", workos_membership(role={"slug": ""})),
            id="role-slug-empty",
        ),
        pytest.param(
            workos_envelope("organization_membership.created", workos_membership(role=None, roles="admin")),
            id="roles-string",
        ),
        pytest.param(
            workos_envelope("organization_membership.created", workos_membership(status=1)), id="status-int"
        ),
        pytest.param(workos_envelope("session.revoked", {"id": "session_1"}), id="session-no-user"),
        pytest.param(workos_envelope("session.revoked", {"user_id": "user_1"}), id="session-no-id"),
    ],
)
def test_workos_org_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        parse_workos(body)
