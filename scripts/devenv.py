"""The database `make run` / `make migrate` use: DATABASE_URL, else the embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import os

from service.config import Settings
from service.dev.devdb import EmbeddedPostgres, ensure_database, start_embedded

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
