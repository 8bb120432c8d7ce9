"""Settings: every environment variable (README, .env.example), validated once at startup.

Each identity provider declares the variables it reads in its own module (`service.providers.*`);
`Settings` inherits those fragments and adds the process-wide ones.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from service import providers
from service.providers.base import CommaList
from service.providers.clerk import ClerkSettings
from service.providers.dev import DevSettings
from service.providers.supabase import SupabaseSettings
from service.providers.workos import WorkOSSettings

MIB = 1024 * 1024
LOOPBACK_NAMES = {"localhost"}


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


class Settings(ClerkSettings, SupabaseSettings, WorkOSSettings, DevSettings):
    """Process configuration. Names are the environment variables, lower-cased."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str | None = None
    # A direct (or session-mode pooler) connection for what needs a session of its own: LISTEN
    # (identity caches, solve events) and the solve queue. Default: DATABASE_URL.
    database_direct_url: str | None = None

    auth_providers: CommaList = Field(default_factory=list)
    admin_role: str = "admin"

    jwks_cache_max_age: float = Field(600, gt=0)
    # Short on purpose: it is also how long a key rotation can be refused under forged-kid traffic.
    jwks_refresh_cooldown: float = Field(5, ge=0)
    jwks_max_stale: float = Field(86400, ge=0)
    jwks_http_timeout: float = Field(5, gt=0)
    jwt_leeway_seconds: int = Field(5, ge=0, le=300)

    cors_origins: CommaList | None = None
    max_body_bytes: int = Field(64 * MIB, gt=0)
    # Webhook bodies are small (Supabase caps hook payloads at 20 KB); an unsigned flood of big ones
    # is refused before it is buffered.
    webhook_max_body_bytes: int = Field(1 * MIB, gt=0)
    # Imported files (CSV, VRPLIB) are read line by line in Python, far slower per byte than JSON:
    # their own, smaller limit (a 2,000-stop VRPLIB file with a full matrix is about 25 MB).
    import_max_body_bytes: int = Field(32 * MIB, gt=0)
    # Request bodies up to this size are parsed on the event loop; larger ones (scenario requests,
    # solution payloads of megabytes) in JSON_PARSE_WORKERS worker processes, so that one big body
    # never stalls the other requests (service/core/bodies.py).
    json_inline_max_bytes: int = Field(1 * MIB, ge=0)
    json_parse_workers: int = Field(1, ge=1)
    # Writes of such bodies at once per process; the others wait their turn, at most
    # JSON_LARGE_WRITES_TIMEOUT seconds (then 503 with Retry-After).
    json_large_writes: int = Field(4, ge=1)
    json_large_writes_timeout: float = Field(30, gt=0)
    # Large documents passing through the event loop at once per process (a scenario's body coming
    # in, its request going out), so that its turns stay short; the others wait, at most
    # JSON_LARGE_WRITES_TIMEOUT seconds (then 503 with Retry-After).
    json_large_transfers: int = Field(4, ge=1)

    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(10, ge=0)
    db_pool_timeout: float = Field(10, gt=0)
    db_statement_cache_size: int = Field(100, ge=0)

    # --- solving (python -m service.worker) ---
    # Solves one worker process runs at once (each in its own OS process); default: CPU count.
    solve_workers: int | None = Field(None, ge=1)
    solve_max_active_per_user: int = Field(3, ge=1)
    solve_max_active_per_workspace: int = Field(10, ge=1)
    solve_max_stops: int = Field(2000, ge=1)
    solve_max_time_limit_s: int = Field(300, ge=1)
    # Beyond the time limit, for parsing, matrices and PyVRP's set-up, before the watchdog kills a solve.
    solve_grace_s: float = Field(10, gt=0)
    # A worker beats every third of this; a job whose worker has been silent this long is re-run
    # by another worker (a worker killed mid-solve).
    solve_heartbeat_timeout_s: float = Field(15, gt=0)
    # Runs of one solve that may be interrupted (crashes, shutdowns) before it is marked failed.
    solve_max_attempts: int = Field(3, ge=1)
    # A solve request's document up to this size is checked on the event loop (about a millisecond
    # at 64 KiB); a larger one in SOLVE_CHECK_WORKERS processes of its own, one check per user at a
    # time; one that cannot start within SOLVE_CHECK_WAIT_S seconds is a 503 (solving/checks.py).
    solve_inline_check_bytes: int = Field(64 * 1024, ge=0)
    solve_check_workers: int = Field(1, ge=1)
    solve_check_wait_s: float = Field(30, gt=0)

    # --- outbound webhooks (sent by the worker's dispatcher) ---
    # Lets deliveries (and registrations) reach loopback and private addresses, and http:// URLs:
    # for development and tests against a local receiver; refused in production.
    outbound_webhook_allow_private: bool = False
    # A failed delivery is retried after a random delay of up to this · 2^(attempts − 1) seconds,
    # for a day after its event.
    outbound_webhook_retry_base_s: float = Field(5, gt=0)
    # Endpoints one workspace may have (each event is sent to every one of them).
    outbound_webhook_max_endpoints: int = Field(20, ge=1)

    log_level: str = "INFO"
    log_format: Literal["json", "console"] | None = None

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    # The server (`python -m service`, service/core/server.py): every wait and every count is bounded.
    web_concurrency: int = Field(1, ge=1)  # worker processes, each with its own pools
    timeout_keep_alive: int = Field(5, ge=1)  # an idle keep-alive connection is closed after this
    # From a connection's opening (or a request's first byte) to its headers' end; then it is closed.
    timeout_request_headers: int = Field(10, ge=1)
    # SIGTERM: requests still running after this many seconds are cancelled and the process exits.
    timeout_graceful_shutdown: int = Field(10, ge=1)
    # Open connections (and running requests) per process; beyond it a request is answered 503.
    limit_concurrency: int = Field(500, ge=1)
    backlog: int = Field(2048, ge=1)
    # X-Forwarded-For/-Proto are believed only when enabled, and only from these peers.
    proxy_headers: bool = False
    forwarded_allow_ips: CommaList = Field(default_factory=lambda: ["127.0.0.1"])

    # Prometheus metrics (docs/metrics.md): served at /metrics on a listener of their own; unset, off.
    metrics_port: int | None = Field(None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    # Where the processes keep their values; unset, the process that serves them makes a private one.
    prometheus_multiproc_dir: Path | None = None

    @field_validator("metrics_port", "prometheus_multiproc_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("auth_providers")
    @classmethod
    def _known_providers(cls, value: list[str]) -> list[str]:
        names = [name.lower() for name in value]
        unknown = sorted(set(names) - set(providers.names()))
        if unknown:
            raise ValueError(
                f"AUTH_PROVIDERS: unknown provider(s) {unknown}; use {', '.join(providers.names())}"
            )
        return list(dict.fromkeys(names))

    @field_validator("log_level")
    @classmethod
    def _upper_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("database_url", "database_direct_url")
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

    def org_role_map(self, provider: str) -> dict[str, str] | None:
        """`<PROVIDER>_ORG_ROLE_MAP` of a provider whose tokens name organisations (Clerk, WorkOS); None
        for one without organisations, whose tokens then always act in the personal workspace."""
        # The instance's own fields, not getattr: a provider without the field (dev, supabase) would
        # take pydantic's __getattr__ and an AttributeError on every request of the member gate.
        mapping: dict[str, str] | None = self.__dict__.get(f"{provider}_org_role_map")
        return mapping

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
            if self.outbound_webhook_allow_private:
                raise ValueError(
                    "OUTBOUND_WEBHOOK_ALLOW_PRIVATE is refused in production: webhooks could reach "
                    "the internal network"
                )
        if self.metrics_port is not None and self.metrics_port == self.port:
            raise ValueError("METRICS_PORT must differ from PORT: metrics are never served on the API's port")
        self._check_provider_settings()
        for name, url in self.jwks_urls().items():
            self._check_jwks_url(name, url)
        return self

    def _check_provider_settings(self) -> None:
        for provider in providers.enabled(self.auth_providers):
            provider.check_settings(self)

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
        """The JWKS URL of every enabled provider that fetches its keys."""
        urls = {p.name: p.jwks_url(self) for p in providers.enabled(self.auth_providers)}
        return {name: url for name, url in urls.items() if url is not None}

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def solve_concurrency(self) -> int:
        return self.solve_workers or os.cpu_count() or 1

    @property
    def direct_database_url(self) -> str | None:
        return self.database_direct_url or self.database_url


def get_settings() -> Settings:
    """Read settings from the environment (and `.env` in development); raises naming the variable."""
    if os.environ.get("ENVIRONMENT", "development") == "development":
        return Settings()
    return Settings(_env_file=None)
