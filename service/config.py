"""Settings: every variable of the contract (§2), validated once at startup."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ProviderName = Literal["clerk", "supabase", "workos", "dev"]
CommaList = Annotated[list[str], NoDecode]

MIB = 1024 * 1024
LOOPBACK_NAMES = {"localhost"}


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _libpq_ssl_to_asyncpg(url: str) -> str:
    """Neon, Supabase and RDS hand out `?sslmode=require`, libpq's spelling; asyncpg calls it `ssl`."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(name == "sslmode" for name, _ in query):
        return url
    renamed = [("ssl" if name == "sslmode" else name, value) for name, value in query]
    return urlunsplit(parts._replace(query=urlencode(renamed)))


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Process configuration. Names are the contract's environment variables, lower-cased."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str | None = None
    data_dir: Path = Path(".data")

    auth_providers: CommaList = Field(default_factory=list)
    admin_role: str = "admin"

    clerk_issuer: str | None = None
    clerk_jwks_url: str | None = None
    clerk_jwt_key: str | None = None
    clerk_authorized_parties: CommaList = Field(default_factory=list)
    clerk_webhook_secret: SecretStr | None = None
    clerk_secret_key: SecretStr | None = None
    clerk_api_url: str = "https://api.clerk.com"
    clerk_roles_claims: CommaList | None = None

    supabase_url: str | None = None
    supabase_jwks_url: str | None = None
    supabase_jwt_secret: SecretStr | None = None
    supabase_audience: str = "authenticated"
    supabase_allow_anonymous: bool = False
    supabase_webhook_secret: SecretStr | None = None
    supabase_service_role_key: SecretStr | None = None
    supabase_roles_claims: CommaList | None = None

    workos_client_id: str | None = None
    workos_issuer: CommaList | None = None
    workos_jwks_url: str | None = None
    workos_webhook_secret: SecretStr | None = None
    workos_api_key: SecretStr | None = None
    workos_api_url: str = "https://api.workos.com"
    workos_roles_claims: CommaList | None = None

    dev_issuer: str = "urn:routebook:dev"
    dev_roles_claims: CommaList | None = None

    jwks_cache_max_age: float = Field(600, gt=0)
    jwks_refresh_cooldown: float = Field(30, ge=0)
    jwks_max_stale: float = Field(86400, ge=0)
    jwks_http_timeout: float = Field(5, gt=0)
    jwt_leeway_seconds: int = Field(5, ge=0, le=300)

    cors_origins: CommaList | None = None
    max_body_bytes: int = Field(64 * MIB, gt=0)

    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(10, ge=0)
    db_pool_timeout: float = Field(10, gt=0)
    db_statement_cache_size: int = Field(100, ge=0)

    log_level: str = "INFO"
    log_format: Literal["json", "console"] | None = None

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    _split = field_validator(
        "auth_providers",
        "clerk_authorized_parties",
        "clerk_roles_claims",
        "supabase_roles_claims",
        "workos_issuer",
        "workos_roles_claims",
        "dev_roles_claims",
        "cors_origins",
        mode="before",
    )(_split_commas)

    @field_validator("auth_providers")
    @classmethod
    def _known_providers(cls, value: list[str]) -> list[str]:
        names = [name.lower() for name in value]
        unknown = sorted(set(names) - {"clerk", "supabase", "workos", "dev"})
        if unknown:
            raise ValueError(
                f"AUTH_PROVIDERS: unknown provider(s) {unknown}; use clerk, supabase, workos, dev"
            )
        return list(dict.fromkeys(names))

    @field_validator("log_level")
    @classmethod
    def _upper_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("database_url")
    @classmethod
    def _asyncpg_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        # Accept the URLs hosting providers hand out, and name the driver ourselves.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                value = "postgresql+asyncpg://" + value[len(prefix) :]
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("DATABASE_URL must be a postgresql+asyncpg:// (or postgresql://) URL")
        return _libpq_ssl_to_asyncpg(value)

    @model_validator(mode="after")
    def _defaults_and_production_rules(self) -> Settings:
        production = self.environment == "production"
        if production and self.database_url is None:
            raise ValueError("DATABASE_URL is required in production (the embedded database is dev-only)")
        if not self.auth_providers:
            if production:
                raise ValueError("AUTH_PROVIDERS is required in production (clerk, supabase and/or workos)")
            self.auth_providers = ["dev"]
        if self.cors_origins is None:
            self.cors_origins = [] if production else ["http://localhost:5173"]
        if self.log_format is None:
            self.log_format = "console" if self.environment == "development" else "json"
        if production:
            if "dev" in self.auth_providers:
                raise ValueError("AUTH_PROVIDERS: the dev issuer is refused in production")
            if "*" in self.cors_origins:
                raise ValueError("CORS_ORIGINS: a wildcard origin is refused in production; list the origins")
        self._check_provider_settings()
        for name, url in self.jwks_urls().items():
            self._check_jwks_url(name, url)
        return self

    def _check_provider_settings(self) -> None:
        if "clerk" in self.auth_providers and not self.clerk_issuer:
            raise ValueError("CLERK_ISSUER is required when AUTH_PROVIDERS includes clerk")
        if "supabase" in self.auth_providers and not self.supabase_url:
            raise ValueError("SUPABASE_URL is required when AUTH_PROVIDERS includes supabase")
        if "workos" in self.auth_providers and not self.workos_client_id:
            raise ValueError("WORKOS_CLIENT_ID is required when AUTH_PROVIDERS includes workos")

    def _check_jwks_url(self, name: str, url: str) -> None:
        parts = urlsplit(url)
        variable = f"{name.upper()}_JWKS_URL"
        if parts.scheme == "https" and parts.hostname:
            return
        if parts.scheme == "http" and is_loopback_host(parts.hostname) and self.environment != "production":
            return
        raise ValueError(
            f"{variable} must be an https:// URL (http:// only for a loopback host, never in production)"
        )

    def jwks_urls(self) -> dict[str, str]:
        """The JWKS URL of every configured network provider (Clerk with a PEM key needs none)."""
        urls: dict[str, str] = {}
        if "clerk" in self.auth_providers and self.clerk_issuer and not self.clerk_jwt_key:
            urls["clerk"] = self.clerk_jwks_url or f"{self.clerk_issuer.rstrip('/')}/.well-known/jwks.json"
        if "supabase" in self.auth_providers and self.supabase_url:
            urls["supabase"] = self.supabase_jwks_url or f"{self.supabase_base}/auth/v1/.well-known/jwks.json"
        if "workos" in self.auth_providers and self.workos_client_id:
            urls["workos"] = (
                self.workos_jwks_url or f"https://api.workos.com/sso/jwks/{self.workos_client_id}"
            )
        return urls

    @property
    def supabase_base(self) -> str:
        return (self.supabase_url or "").rstrip("/")

    @property
    def supabase_issuer(self) -> str:
        return f"{self.supabase_base}/auth/v1"

    @property
    def workos_issuers(self) -> list[str]:
        if self.workos_issuer:
            return self.workos_issuer
        return [f"https://api.workos.com/user_management/{self.workos_client_id}"]

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def dev_key_path(self) -> Path:
        return self.data_dir / "dev-issuer.pem"


def get_settings() -> Settings:
    """Read settings from the environment (and `.env` in development); raises naming the variable."""
    if os.environ.get("ENVIRONMENT", "development") == "development":
        return Settings()
    return Settings(_env_file=None)
