"""The development issuer: one key file (0600) reused across restarts; its tokens verify."""

from __future__ import annotations

import logging
import stat
import time
from pathlib import Path

import httpx
import pytest

from service.auth.tokens import InvalidToken, TokenVerifier
from service.providers.dev import DevIssuer, dev_profile

ISSUER = "urn:routebook:dev"


def verifier_for(issuer: DevIssuer, http: httpx.AsyncClient) -> TokenVerifier:
    return TokenVerifier([dev_profile(issuer)], leeway=5)


def test_the_key_file_is_created_with_mode_0600_in_new_directories(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "nested" / "data" / "dev-issuer.pem"

    with caplog.at_level(logging.WARNING, logger="routebook.auth.dev"):
        DevIssuer.load_or_create(path, ISSUER)

    assert not caplog.records  # created 0600, not tightened after the fact
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert [p.name for p in path.parent.iterdir()] == ["dev-issuer.pem"]  # no temp file left


async def test_the_key_is_reused_on_reload(tmp_path: Path, http: httpx.AsyncClient) -> None:
    path = tmp_path / "dev-issuer.pem"
    first = DevIssuer.load_or_create(path, ISSUER)
    before = path.read_bytes()

    second = DevIssuer.load_or_create(path, ISSUER)

    assert path.read_bytes() == before
    assert second.kid == first.kid
    token = first.mint(subject="dev|ada", email="ada@example.com")
    assert (await verifier_for(second, http).verify(token)).subject == "dev|ada"


def test_a_readable_key_file_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "dev-issuer.pem"
    DevIssuer.load_or_create(path, ISSUER)
    path.chmod(0o644)

    DevIssuer.load_or_create(path, ISSUER)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_jwks_is_public_only_with_kid_alg_and_use(tmp_path: Path) -> None:
    issuer = DevIssuer.load_or_create(tmp_path / "k.pem", ISSUER)

    (key,) = issuer.jwks()["keys"]

    assert key["kid"] == issuer.kid
    assert (key["alg"], key["use"], key["kty"]) == ("RS256", "sig", "RSA")
    assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys()


async def test_minted_tokens_verify_with_roles_email_and_session(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    issuer = DevIssuer.load_or_create(tmp_path / "k.pem", ISSUER)
    token = issuer.mint(
        subject="dev|1", email="a@example.com", roles=["admin"], session_id="dev-sess", ttl_seconds=60
    )

    claims = await verifier_for(issuer, http).verify(token)

    assert (claims.provider, claims.subject, claims.email) == ("dev", "dev|1", "a@example.com")
    assert claims.roles == ("admin",)
    assert claims.session_id == "dev-sess"
    assert claims.expires_at == pytest.approx(time.time() + 60, abs=5)


async def test_another_dev_key_is_not_trusted(tmp_path: Path, http: httpx.AsyncClient) -> None:
    ours = DevIssuer.load_or_create(tmp_path / "ours.pem", ISSUER)
    theirs = DevIssuer.load_or_create(tmp_path / "theirs.pem", ISSUER)

    with pytest.raises(InvalidToken):
        await verifier_for(ours, http).verify(theirs.mint(subject="dev|1", email=None))


def test_mint_refuses_an_empty_subject_or_ttl(tmp_path: Path) -> None:
    issuer = DevIssuer.load_or_create(tmp_path / "k.pem", ISSUER)
    with pytest.raises(ValueError):
        issuer.mint(subject="", email=None)
    with pytest.raises(ValueError):
        issuer.mint(subject="dev|1", email=None, ttl_seconds=0)
