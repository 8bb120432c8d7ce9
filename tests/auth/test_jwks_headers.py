"""A JWKS response's headers are read as ASCII numbers only: `str.isdigit()` accepts "²", which
`int()` refuses, and `\\d` accepts other scripts' digits."""

from __future__ import annotations

import json

import httpx
import respx

from service.auth.jwks import cache_control_max_age
from tests.auth.conftest import cache_for
from tests.kit import MockProvider


async def test_a_content_length_of_superscript_digits_is_ignored(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    clerk = MockProvider.clerk()
    body = json.dumps(clerk.jwks()).encode()
    router.get(clerk.jwks_url).mock(
        return_value=httpx.Response(200, headers=[(b"content-length", b"\xb2")], content=body)
    )
    key = await cache_for(clerk, http).get_key(clerk.key.kid, "RS256")
    assert key is not None


def test_max_age_is_ascii_digits_only() -> None:
    assert cache_control_max_age("max-age=300") == 300
    assert cache_control_max_age("max-age=\u0663\u0663") is None  # Arabic-Indic "33"
    assert cache_control_max_age("max-age=\u00b2") is None
    assert cache_control_max_age("max-age=" + "9" * 400) is None
