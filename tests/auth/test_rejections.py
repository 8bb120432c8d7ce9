"""Every rejection a token can meet (docs/api.md, Authentication), each on its own: all raise InvalidToken."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import httpx
import jwt
import pytest
import respx

from service.auth.tokens import InvalidToken, TokenVerifier
from tests.auth.conftest import VerifierFactory
from tests.kit import REMOVE, MockProvider, SigningKey
from tests.kit.forge import assemble, b64url, b64url_json, hmac_signed, replace_signature, sign_raw, split

SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"


async def assert_rejected(verifier: TokenVerifier, token: str) -> None:
    with pytest.raises(InvalidToken):
        await verifier.verify(token)


@pytest.fixture
def clerk(router: respx.MockRouter) -> MockProvider:
    provider = MockProvider.clerk()
    provider.mock(router)
    return provider


@pytest.fixture
def supabase(router: respx.MockRouter) -> MockProvider:
    provider = MockProvider.supabase(alg="ES256")
    provider.mock(router)
    return provider


@pytest.fixture
def workos(router: respx.MockRouter) -> MockProvider:
    provider = MockProvider.workos()
    provider.mock(router)
    return provider


async def test_a_valid_token_passes_as_control(clerk: MockProvider, make_verifier: VerifierFactory) -> None:
    # Each rejection below changes one thing in a token like this one.
    assert (await make_verifier(clerk).verify(clerk.token("user_1"))).subject == "user_1"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none_is_rejected(alg: str, clerk: MockProvider, make_verifier: VerifierFactory) -> None:
    header, payload, _ = split(clerk.token("user_1"))
    await assert_rejected(make_verifier(clerk), assemble({**header, "alg": alg}, payload))


async def test_empty_signature_is_rejected(clerk: MockProvider, make_verifier: VerifierFactory) -> None:
    await assert_rejected(make_verifier(clerk), replace_signature(clerk.token("user_1"), b""))


async def test_signature_of_another_token_is_rejected(
    clerk: MockProvider, make_verifier: VerifierFactory
) -> None:
    other_signature = clerk.token("user_2").split(".")[2]
    head, body, _ = clerk.token("user_1").split(".")
    await assert_rejected(make_verifier(clerk), f"{head}.{body}.{other_signature}")


def _public_key_forms(provider: MockProvider) -> dict[str, bytes]:
    jwk = provider.key.public_jwk()
    return {
        "pem": provider.public_pem().encode(),
        "jwk-json": json.dumps(jwk).encode(),
        "jwk-json-compact": json.dumps(jwk, separators=(",", ":")).encode(),
        "jwks-json": json.dumps(provider.jwks()).encode(),
    }


@pytest.mark.parametrize("form", ["pem", "jwk-json", "jwk-json-compact", "jwks-json"])
@pytest.mark.parametrize("kind", ["clerk", "supabase-es256", "supabase-rs256", "supabase-hs256", "workos"])
async def test_hs256_signed_with_the_public_key_is_rejected(
    kind: str, form: str, router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    provider = {
        "clerk": lambda: MockProvider.clerk(),
        "supabase-es256": lambda: MockProvider.supabase(alg="ES256"),
        "supabase-rs256": lambda: MockProvider.supabase(alg="RS256"),
        "supabase-hs256": lambda: MockProvider.supabase(alg="RS256", jwt_secret=SECRET),
        "workos": lambda: MockProvider.workos(),
    }[kind]()
    provider.mock(router)
    header, payload, _ = split(provider.token("user_1"))

    forged = hmac_signed(header, payload, _public_key_forms(provider)[form])

    await assert_rejected(make_verifier(provider), forged)


async def test_es256_with_zero_r_and_s_is_rejected(
    supabase: MockProvider, make_verifier: VerifierFactory
) -> None:
    # "Psychic signatures" (CVE-2022-21449): r = s = 0 must never verify.
    await assert_rejected(make_verifier(supabase), replace_signature(supabase.token(), bytes(64)))


async def test_ps256_against_an_rs256_jwk_is_rejected(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    supabase = MockProvider.supabase(alg="RS256")
    supabase.mock(router)
    # Signed by the right RSA key, but with PS256 where the JWK says RS256.
    await assert_rejected(make_verifier(supabase), supabase.token(alg="PS256"))


async def test_es256_naming_an_rsa_kid_is_rejected(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    supabase = MockProvider.supabase(alg="RS256")
    supabase.mock(router)
    attacker = SigningKey.generate("ES256")
    token = supabase.token(key=attacker, headers={"kid": supabase.key.kid})
    await assert_rejected(make_verifier(supabase), token)


async def test_embedded_jwk_header_is_rejected(clerk: MockProvider, make_verifier: VerifierFactory) -> None:
    attacker = SigningKey.generate("RS256", kid=clerk.key.kid)
    token = clerk.token("user_1", key=attacker, headers={"jwk": attacker.public_jwk()})
    await assert_rejected(make_verifier(clerk), token)


async def test_embedded_jwk_header_is_rejected_even_when_signed_by_the_real_key(
    clerk: MockProvider, make_verifier: VerifierFactory
) -> None:
    token = clerk.token("user_1", headers={"jwk": clerk.key.public_jwk()})
    await assert_rejected(make_verifier(clerk), token)


@pytest.mark.parametrize("member", ["jku", "x5u"])
async def test_key_url_headers_are_rejected_and_never_fetched(
    member: str, clerk: MockProvider, router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    attacker = SigningKey.generate("RS256")
    evil = router.get("https://evil.test/keys").mock(
        return_value=httpx.Response(200, json={"keys": [attacker.public_jwk()]})
    )
    token = clerk.token("user_1", key=attacker, headers={member: "https://evil.test/keys"})

    await assert_rejected(make_verifier(clerk), token)

    assert evil.call_count == 0


async def test_x5c_header_is_rejected(clerk: MockProvider, make_verifier: VerifierFactory) -> None:
    token = clerk.token("user_1", headers={"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]})
    await assert_rejected(make_verifier(clerk), token)


@pytest.mark.parametrize("crit", [["exp"], ["b64"], ["urn:example:unknown"]])
async def test_crit_header_is_rejected(
    crit: list[str], clerk: MockProvider, make_verifier: VerifierFactory
) -> None:
    # Signed raw: PyJWT's encoder drops `b64: true`, and PyJWT itself would accept
    # crit ["b64"] with b64 true; we implement no extension, so any crit is refused.
    header, payload, _ = split(clerk.token("user_1"))
    token = sign_raw(payload, clerk.key.private, "RS256", {**header, "crit": crit, crit[0]: True})
    await assert_rejected(make_verifier(clerk), token)


@pytest.mark.parametrize(
    "issuer",
    [
        "https://clerk.routebook",  # a prefix of the real issuer
        "https://clerk.routebook.test/",  # the real issuer plus a suffix
        "https://clerk.routebook.test.evil.test",
        "https://clerk.other-tenant.test",  # another instance of the same provider
        "HTTPS://CLERK.ROUTEBOOK.TEST",
        "",
    ],
)
async def test_issuer_not_exactly_equal_is_rejected(
    issuer: str, clerk: MockProvider, make_verifier: VerifierFactory
) -> None:
    await assert_rejected(make_verifier(clerk), clerk.token("user_1", iss=issuer))


@pytest.mark.parametrize(
    "issuer", [["https://clerk.routebook.test"], {"iss": "https://clerk.routebook.test"}, 1]
)
async def test_issuer_that_is_not_a_string_is_rejected(
    issuer: Any, clerk: MockProvider, make_verifier: VerifierFactory
) -> None:
    payload = {**split(clerk.token("user_1"))[1], "iss": issuer}
    token = sign_raw(payload, clerk.key.private, "RS256", {"kid": clerk.key.kid})
    await assert_rejected(make_verifier(clerk), token)


async def test_missing_issuer_is_rejected(clerk: MockProvider, make_verifier: VerifierFactory) -> None:
    await assert_rejected(make_verifier(clerk), clerk.token("user_1", iss=REMOVE))


async def test_another_tenants_token_is_rejected_though_its_kid_matches(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    ours = MockProvider.clerk("https://clerk.ours.test")
    theirs = MockProvider.clerk("https://clerk.theirs.test")
    ours.mock(router)
    # Same kid, different key: their token names our kid but their key signed it.
    theirs.keys = [SigningKey(theirs.key.private, ours.key.kid, "RS256")]
    await assert_rejected(make_verifier(ours), theirs.token("user_1", iss=ours.issuer))


@pytest.mark.parametrize("aud", ["anon", "other", ["other"], REMOVE])
async def test_wrong_or_missing_supabase_audience_is_rejected(
    aud: Any, supabase: MockProvider, make_verifier: VerifierFactory
) -> None:
    await assert_rejected(make_verifier(supabase), supabase.token(aud=aud))


@pytest.mark.parametrize("kind", ["clerk", "workos"])
async def test_audience_on_a_provider_without_one_is_rejected(
    kind: str, clerk: MockProvider, workos: MockProvider, make_verifier: VerifierFactory
) -> None:
    provider = clerk if kind == "clerk" else workos
    await assert_rejected(make_verifier(provider), provider.token("user_1", aud="some-other-api"))


@pytest.mark.parametrize("role", ["anon", "service_role"])
async def test_supabase_api_keys_are_rejected(
    role: str, supabase: MockProvider, make_verifier: VerifierFactory
) -> None:
    await assert_rejected(make_verifier(supabase), supabase.api_key(role))  # type: ignore[arg-type]


@pytest.mark.parametrize("role", ["anon", "service_role"])
async def test_supabase_api_key_shaped_token_under_the_project_issuer_is_rejected(
    role: str, supabase: MockProvider, make_verifier: VerifierFactory
) -> None:
    await assert_rejected(make_verifier(supabase), supabase.api_key(role, iss=supabase.issuer))  # type: ignore[arg-type]


@pytest.mark.parametrize("role", ["anon", "service_role"])
async def test_supabase_non_user_role_with_a_subject_is_rejected(
    role: str, supabase: MockProvider, make_verifier: VerifierFactory
) -> None:
    await assert_rejected(make_verifier(supabase), supabase.token(role=role))


@pytest.mark.parametrize("role", [["authenticated"], {"name": "authenticated"}, 1])
async def test_supabase_role_that_is_not_a_string_is_rejected(
    role: Any, supabase: MockProvider, make_verifier: VerifierFactory
) -> None:
    await assert_rejected(make_verifier(supabase), supabase.token(role=role))


async def test_supabase_hs256_api_key_is_rejected(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    supabase = MockProvider.supabase(jwt_secret=SECRET)
    supabase.mock(router)
    await assert_rejected(make_verifier(supabase), supabase.api_key("service_role", iss=supabase.issuer))


async def test_supabase_anonymous_user_is_rejected_by_default(
    supabase: MockProvider, make_verifier: VerifierFactory
) -> None:
    await assert_rejected(make_verifier(supabase), supabase.token(is_anonymous=True))


async def test_expired_token_is_rejected(clerk: MockProvider, make_verifier: VerifierFactory) -> None:
    now = int(time.time())
    await assert_rejected(
        make_verifier(clerk), clerk.token("user_1", iat=now - 120, nbf=now - 120, exp=now - 30)
    )


async def test_expiry_inside_the_leeway_is_accepted(
    clerk: MockProvider, make_verifier: VerifierFactory
) -> None:
    # Guards the previous test's meaning: leeway exists, and 30 s past exp is beyond it.
    now = int(time.time())
    token = clerk.token("user_1", iat=now - 60, nbf=now - 60, exp=now - 2)
    assert (await make_verifier(clerk).verify(token)).subject == "user_1"


async def test_nbf_in_the_future_beyond_leeway_is_rejected(
    clerk: MockProvider, make_verifier: VerifierFactory
) -> None:
    await assert_rejected(make_verifier(clerk), clerk.token("user_1", nbf=int(time.time()) + 60))


async def test_iat_in_the_future_beyond_leeway_is_rejected(
    workos: MockProvider, make_verifier: VerifierFactory
) -> None:
    await assert_rejected(make_verifier(workos), workos.token("user_1", iat=int(time.time()) + 60))


async def test_nbf_and_iat_inside_the_leeway_are_accepted(
    clerk: MockProvider, make_verifier: VerifierFactory
) -> None:
    soon = int(time.time()) + 2
    assert (await make_verifier(clerk).verify(clerk.token("user_1", nbf=soon, iat=soon))).subject == "user_1"


async def test_missing_exp_is_rejected(workos: MockProvider, make_verifier: VerifierFactory) -> None:
    await assert_rejected(make_verifier(workos), workos.token("user_1", exp=REMOVE))


# 10**400 and NaN pass PyJWT's own exp check; the first one crashed float() afterwards.
INSANE_TIMESTAMPS = ["9999999999", None, True, 10**400, math.inf, math.nan, 253_402_300_800]


@pytest.mark.parametrize("exp", INSANE_TIMESTAMPS)
async def test_exp_not_a_sane_timestamp_is_rejected(
    exp: Any, workos: MockProvider, make_verifier: VerifierFactory
) -> None:
    await assert_rejected(make_verifier(workos), workos.token("user_1", exp=exp))


@pytest.mark.parametrize("iat", INSANE_TIMESTAMPS)
async def test_iat_not_a_sane_timestamp_is_rejected(
    iat: Any, workos: MockProvider, make_verifier: VerifierFactory
) -> None:
    await assert_rejected(make_verifier(workos), workos.token("user_1", iat=iat))


@pytest.mark.parametrize("sub", [REMOVE, "", "   ", None, 42, ["user_1"]])
async def test_missing_or_bad_sub_is_rejected(
    sub: Any, workos: MockProvider, make_verifier: VerifierFactory
) -> None:
    await assert_rejected(make_verifier(workos), workos.token(sub=sub))


@pytest.mark.parametrize("azp", ["https://evil.test", "http://localhost:5173.evil.test", REMOVE, ["x"]])
async def test_clerk_azp_outside_the_list_is_rejected(
    azp: Any, clerk: MockProvider, make_verifier: VerifierFactory
) -> None:
    await assert_rejected(make_verifier(clerk), clerk.token("user_1", azp=azp))


async def test_clerk_azp_unchecked_when_no_list_is_configured(
    clerk: MockProvider, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(clerk, clerk_authorized_parties="")
    assert (await verifier.verify(clerk.token("user_1", azp="https://anywhere.test"))).subject == "user_1"


async def test_clerk_pending_session_is_rejected(clerk: MockProvider, make_verifier: VerifierFactory) -> None:
    await assert_rejected(make_verifier(clerk), clerk.token("user_1", sts="pending"))


async def test_five_part_jwe_is_rejected(clerk: MockProvider, make_verifier: VerifierFactory) -> None:
    header = b64url_json({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": clerk.key.kid})
    jwe = ".".join([header, b64url(bytes(256)), b64url(bytes(12)), b64url(b"ciphertext"), b64url(bytes(16))])
    await assert_rejected(make_verifier(clerk), jwe)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not-a-token",
        "a.b.c",
        "....",
        "eyJhbGciOiJSUzI1NiJ9..",
        "eyJ.eyJ.eyJ",
        "%%%.%%%.%%%",
        "ünïcødé.ünïcødé.ünïcødé",
        b64url_json([1, 2]) + "." + b64url_json({}) + ".",
        b64url_json({"alg": "RS256"}) + "." + b64url(b"\xff\xfe") + ".",
        b64url_json({"alg": "RS256"}) + "." + b64url_json([1]) + ".",
        b64url(b"[" * 5000) + ".e30.",
    ],
)
async def test_garbage_is_rejected(garbage: str, clerk: MockProvider, make_verifier: VerifierFactory) -> None:
    await assert_rejected(make_verifier(clerk), garbage)


async def test_a_20_kib_token_is_rejected_before_parsing(
    clerk: MockProvider,
    router: respx.MockRouter,
    make_verifier: VerifierFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = clerk.token("user_1", padding="x" * 20 * 1024)
    calls: list[str] = []
    monkeypatch.setattr(jwt.api_jwt, "decode_complete", lambda *a, **k: calls.append("parsed"))

    await assert_rejected(make_verifier(clerk), token)

    assert calls == []


async def test_a_token_just_under_16_kib_is_still_verified(
    clerk: MockProvider, make_verifier: VerifierFactory
) -> None:
    token = clerk.token("user_1", padding="x" * 11 * 1024)
    assert 12 * 1024 < len(token) < 16 * 1024
    assert (await make_verifier(clerk).verify(token)).subject == "user_1"


async def test_provider_a_issuer_signed_with_provider_b_key_is_rejected(
    clerk: MockProvider, workos: MockProvider, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(clerk, workos)
    await verifier.verify(workos.token("user_1"))  # B's keys are now cached and trusted for B

    with_b_kid = workos.token("user_1", iss=clerk.issuer, azp=clerk.azp)
    with_a_kid = workos.token("user_1", iss=clerk.issuer, azp=clerk.azp, headers={"kid": clerk.key.kid})

    await assert_rejected(verifier, with_b_kid)
    await assert_rejected(verifier, with_a_kid)


async def test_path_traversal_kid_with_an_empty_hmac_key_is_rejected(
    clerk: MockProvider, make_verifier: VerifierFactory
) -> None:
    header, payload, _ = split(clerk.token("user_1"))
    token = hmac_signed({**header, "kid": "../../../dev/null"}, payload, b"")
    await assert_rejected(make_verifier(clerk), token)


async def test_path_traversal_kid_with_an_empty_hmac_key_is_rejected_by_supabase_with_a_secret(
    router: respx.MockRouter, make_verifier: VerifierFactory
) -> None:
    supabase = MockProvider.supabase(jwt_secret=SECRET)
    supabase.mock(router)
    header, payload, _ = split(supabase.token())
    token = hmac_signed({**header, "kid": "../../../dev/null"}, payload, b"")
    await assert_rejected(make_verifier(supabase), token)


async def test_path_traversal_kid_with_an_asymmetric_alg_is_an_unknown_kid(
    clerk: MockProvider, make_verifier: VerifierFactory
) -> None:
    token = clerk.token("user_1", headers={"kid": "../../../dev/null"})
    await assert_rejected(make_verifier(clerk), token)


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512", "RS384", "ES512", "EdDSA", "PS256"])
async def test_algorithms_not_pinned_for_clerk_are_rejected(
    alg: str, clerk: MockProvider, make_verifier: VerifierFactory
) -> None:
    header, payload, _ = split(clerk.token("user_1"))
    await assert_rejected(make_verifier(clerk), assemble({**header, "alg": alg}, payload, b"\x00" * 64))


@pytest.mark.parametrize("kid", [123, ["a"], {"k": 1}])
async def test_non_string_kid_is_rejected(
    kid: Any, clerk: MockProvider, make_verifier: VerifierFactory
) -> None:
    header, payload, _ = split(clerk.token("user_1"))
    token = sign_raw(payload, clerk.key.private, "RS256", {**header, "kid": kid})
    await assert_rejected(make_verifier(clerk), token)
