"""Settings fail fast, naming the variable, on unsafe production configuration."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from service.config import Settings

PRODUCTION = {
    "environment": "production",
    "database_url": "postgresql://app@db.example.com/routebook",
    "auth_providers": "clerk",
    "clerk_issuer": "https://clerk.example.com",
}


def build(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_production_configuration_is_accepted() -> None:
    settings = build(**PRODUCTION)
    assert settings.database_url == "postgresql+asyncpg://app@db.example.com/routebook"
    assert settings.cors_origins == []
    assert settings.log_format == "json"


def test_production_without_database_url_refuses_to_start() -> None:
    with pytest.raises(ValidationError, match="DATABASE_URL"):
        build(**{**PRODUCTION, "database_url": None})


def test_production_refuses_outbound_webhooks_to_private_addresses() -> None:
    with pytest.raises(ValidationError, match="OUTBOUND_WEBHOOK_ALLOW_PRIVATE"):
        build(**PRODUCTION, outbound_webhook_allow_private=True)
    assert build(environment="test", outbound_webhook_allow_private=True).outbound_webhook_allow_private


def test_production_with_wildcard_cors_refuses_to_start() -> None:
    with pytest.raises(ValidationError, match="CORS_ORIGINS"):
        build(**PRODUCTION, cors_origins="https://app.example.com,*")


def test_production_refuses_the_dev_issuer() -> None:
    with pytest.raises(ValidationError, match="AUTH_PROVIDERS"):
        build(**{**PRODUCTION, "auth_providers": "clerk,dev"})


def test_production_requires_auth_providers() -> None:
    with pytest.raises(ValidationError, match="AUTH_PROVIDERS"):
        build(**{**PRODUCTION, "auth_providers": ""})


def test_production_refuses_http_jwks_url() -> None:
    with pytest.raises(ValidationError, match="CLERK_JWKS_URL"):
        build(**PRODUCTION, clerk_jwks_url="http://127.0.0.1:9000/jwks.json")


def test_development_defaults() -> None:
    settings = build()
    assert settings.auth_providers == ["dev"]
    assert settings.cors_origins == ["http://localhost:5173"]
    assert settings.max_body_bytes == 64 * 1024 * 1024
    assert (settings.db_pool_size, settings.db_max_overflow, settings.db_statement_cache_size) == (
        10,
        10,
        100,
    )


def test_http_jwks_url_only_for_loopback_outside_production() -> None:
    assert build(
        auth_providers="clerk", clerk_issuer="https://c.example.com", clerk_jwks_url="http://127.0.0.1:9/j"
    )
    with pytest.raises(ValidationError, match="CLERK_JWKS_URL"):
        build(
            auth_providers="clerk",
            clerk_issuer="https://c.example.com",
            clerk_jwks_url="http://evil.example/j",
        )


def test_unknown_provider_is_named() -> None:
    with pytest.raises(ValidationError, match="okta"):
        build(auth_providers="dev,okta")


def test_provider_settings_required_when_listed() -> None:
    with pytest.raises(ValidationError, match="SUPABASE_URL"):
        build(auth_providers="supabase")


def test_libpq_sslmode_from_a_hosting_provider_becomes_asyncpg_ssl() -> None:
    from service.core.db import asyncpg_connect_args

    settings = build(database_url="postgres://app:pw@ep-cool.neon.tech/routebook?sslmode=require")
    assert settings.database_url == "postgresql+asyncpg://app:pw@ep-cool.neon.tech/routebook?ssl=require"
    assert asyncpg_connect_args(settings.database_url)["ssl"] == "require"  # the LISTEN connection too


def test_metrics_are_off_by_default_and_never_on_the_api_port() -> None:
    assert build().metrics_port is None
    assert build(metrics_port="").metrics_port is None  # METRICS_PORT= in a .env file
    assert build(port=8000, metrics_port=9100).metrics_host == "127.0.0.1"
    with pytest.raises(ValidationError, match="METRICS_PORT must differ from PORT"):
        build(port=9100, metrics_port=9100)
