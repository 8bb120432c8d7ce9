"""Provider-shaped tokens verify into the right Claims (the role mapping of docs/api.md)."""

from __future__ import annotations

import pytest
import respx

from service.auth.profile import OrgContext
from service.auth.tokens import InvalidToken
from tests.auth.conftest import VerifierFactory
from tests.kit import REMOVE, MockProvider, Org


async def test_clerk_v2_token_maps_the_organisation_apart_from_global_roles(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    clerk = MockProvider.clerk()
    clerk.mock(router)
    verifier = make_verifier(clerk)
    token = clerk.token("user_2abc", org=Org(id="org_9", role="admin", permissions=("read", "manage")))

    claims = await verifier.verify(token)

    assert claims.provider == "clerk"
    assert claims.subject == "user_2abc"
    assert claims.issuer == clerk.issuer
    # An organisation role is the organisation's, never a global role.
    assert claims.org == OrgContext(id="org_9", role="admin", permissions=("read", "manage"))
    assert claims.roles == ()
    assert claims.permissions == ()
    assert claims.session_id is not None
    assert claims.session_id.startswith("sess_")
    assert claims.claims["v"] == 2


async def test_issued_at_comes_from_iat_when_present(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    workos = MockProvider.workos()
    workos.mock(router)
    verifier = make_verifier(workos)

    claims = await verifier.verify(workos.token("user_1", expires_in=600))
    without_iat = await verifier.verify(workos.token("user_1", iat=REMOVE))

    assert claims.issued_at is not None
    assert claims.issued_at == claims.claims["iat"]
    assert claims.expires_at - claims.issued_at == 600
    assert without_iat.issued_at is None


async def test_clerk_v1_org_role_loses_its_org_prefix(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    clerk = MockProvider.clerk()
    clerk.mock(router)
    token = clerk.token("user_1", version=1, org=Org(id="org_1", role="admin", permissions=("posts:read",)))

    claims = await make_verifier(clerk).verify(token)

    assert claims.org == OrgContext(id="org_1", role="admin", permissions=("posts:read",))
    assert claims.roles == ()


async def test_clerk_metadata_roles_are_roles(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    clerk = MockProvider.clerk()
    clerk.mock(router)
    verifier = make_verifier(clerk)

    from_list = await verifier.verify(clerk.token("user_1", roles=["admin", "editor"]))
    from_string = await verifier.verify(clerk.token("user_2", metadata={"role": "admin"}))

    assert from_list.roles == ("admin", "editor")
    assert from_string.roles == ("admin",)
    assert from_list.org is None


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
async def test_supabase_token_maps_app_metadata_roles_and_session(
    alg: str, router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    supabase = MockProvider.supabase(alg=alg)  # type: ignore[arg-type]
    supabase.mock(router)
    token = supabase.token(
        "6f1d0a38-1111-4c4e-9a55-000000000001",
        app_metadata={"provider": "email", "role": "admin", "roles": ["editor"]},
        user_role="auditor",
        email="ada@example.com",
    )

    claims = await make_verifier(supabase).verify(token)

    assert claims.provider == "supabase"
    assert claims.subject == "6f1d0a38-1111-4c4e-9a55-000000000001"
    assert claims.roles == ("admin", "editor", "auditor")
    assert claims.email == "ada@example.com"
    assert claims.session_id == claims.claims["session_id"]


async def test_supabase_user_metadata_never_grants_roles(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    supabase = MockProvider.supabase()
    supabase.mock(router)
    token = supabase.token(user_metadata={"role": "admin", "roles": ["admin"]})

    assert (await make_verifier(supabase).verify(token)).roles == ()


async def test_supabase_hs256_accepted_only_with_the_secret(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    secret = "super-secret-jwt-token-with-at-least-32-characters-long"
    supabase = MockProvider.supabase(jwt_secret=secret)
    supabase.mock(router)

    claims = await make_verifier(supabase).verify(supabase.token("u-1", alg="HS256"))

    assert claims.subject == "u-1"
    without_secret = make_verifier(supabase, supabase_jwt_secret=None)
    with pytest.raises(InvalidToken):
        await without_secret.verify(supabase.token("u-1", alg="HS256"))


async def test_supabase_anonymous_user_accepted_when_allowed(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    supabase = MockProvider.supabase(allow_anonymous=True)
    supabase.mock(router)

    claims = await make_verifier(supabase).verify(supabase.token(is_anonymous=True))

    assert claims.claims["is_anonymous"] is True


async def test_workos_token_maps_role_and_permissions_to_the_organisation(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    workos = MockProvider.workos()
    workos.mock(router)
    token = workos.token("user_01ABC", role="admin", roles=["admin", "billing"], permissions=["plans:write"])

    claims = await make_verifier(workos).verify(token)

    assert claims.provider == "workos"
    # WorkOS's role and permissions are the organisation membership's: no global roles by default.
    assert claims.roles == ()
    assert claims.org == OrgContext(id="org_01TESTORG", role="admin", permissions=("plans:write",))
    assert claims.session_id == claims.claims["sid"]
    assert claims.email is None


async def test_roles_claims_override_replaces_default_paths(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    workos = MockProvider.workos()
    workos.mock(router)
    verifier = make_verifier(workos, workos_roles_claims="https://routebook.test/roles,custom.groups")
    token = workos.token(
        role="admin", claims={"https://routebook.test/roles": ["planner"], "custom": {"groups": "a,b"}}
    )

    assert (await verifier.verify(token)).roles == ("planner", "a", "b")


async def test_three_providers_at_once_each_routed_by_iss(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    clerk, supabase, workos = MockProvider.clerk(), MockProvider.supabase(), MockProvider.workos()
    routes = [p.mock(router) for p in (clerk, supabase, workos)]
    verifier = make_verifier(clerk, supabase, workos)

    results = [await verifier.verify(p.token("same-subject")) for p in (clerk, supabase, workos)]

    assert [c.provider for c in results] == ["clerk", "supabase", "workos"]
    assert [c.issuer for c in results] == [clerk.issuer, supabase.issuer, workos.issuer]
    assert [r.call_count for r in routes] == [1, 1, 1]


async def test_workos_accepts_each_configured_issuer(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    workos = MockProvider.workos()
    workos.mock(router)
    verifier = make_verifier(workos, workos_issuer=f"{workos.issuer},https://api.workos.com")

    claims = await verifier.verify(workos.token(iss="https://api.workos.com"))

    assert claims.issuer == "https://api.workos.com"
