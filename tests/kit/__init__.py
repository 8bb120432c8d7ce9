"""Test kit: mock Clerk / Supabase / WorkOS providers whose JWKS is served through respx.

Typical use (no network; respx answers the JWKS URL and counts fetches)::

    import httpx, respx
    from service.providers import build_verifier
from service.auth.tokens import TokenVerifier
    from tests.kit import MockProvider, Org, REMOVE, make_settings

    clerk = MockProvider.clerk()                      # RS256 key, issuer https://clerk.routebook.test
    supabase = MockProvider.supabase(alg="ES256")     # issuer https://ref.supabase.test/auth/v1
    with respx.mock(assert_all_mocked=True) as router:
        route = clerk.mock(router)                    # route.call_count == JWKS fetches
        supabase.mock(router)
        settings = make_settings(clerk, supabase)     # Settings(auth_providers=[...], clerk_issuer=...)
        async with httpx.AsyncClient() as http:
            verifier = build_verifier(settings, http)
            claims = await verifier.verify(clerk.token("user_1", org=Org(role="admin")))
            await verifier.verify(supabase.token(roles=["admin"], email="a@example.com"))

Tokens: `provider.token(subject, roles=..., org=Org(...), version=1|2, expires_in=...,
headers={...}, key=other_key, alg=..., **claim_overrides)`; a claim or header set to `REMOVE`
is deleted. `roles=` lands where each provider puts roles (Clerk `metadata.roles`, Supabase
`app_metadata.roles`, WorkOS `role`/`roles`). `provider.rotate(keep_old=...)` changes the
served key; `provider.api_key("anon")` is a Supabase API-key JWT. `settings_overrides()` /
`merge_overrides(...)` give Settings keyword arguments for app fixtures.

`tests.kit.clock.FakeClock` is a clock with its `sleep` for `JWKSCache(clock=..., sleep=...)`;
`tests.kit.waiting.eventually` waits on a condition.

`tests.kit.forge` builds what PyJWT will not: `assemble(header, payload, sig)` (alg none,
empty signatures), `hmac_signed(header, payload, key_bytes)` (HS256 with a public key),
`reheader(token, jku=...)`, `replace_signature(token, sig)`, `split(token)`.
"""

from tests.kit.providers import (
    REMOVE,
    MockProvider,
    Org,
    SigningKey,
    make_settings,
    merge_overrides,
    mock_all,
)

__all__ = [
    "REMOVE",
    "MockProvider",
    "Org",
    "SigningKey",
    "make_settings",
    "merge_overrides",
    "mock_all",
]
