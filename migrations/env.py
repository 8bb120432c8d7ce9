"""Alembic environment: async, against DATABASE_URL (or a URL/connection handed in by the caller)."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import service.tables  # noqa: F401  (registers every table on the metadata)
from service.config import get_settings
from service.core.db import metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        url = get_settings().database_url
    if not url:
        raise SystemExit("DATABASE_URL is not set: use `make migrate`, which starts the embedded PostgreSQL")
    return str(url)


def _ours(name: str | None, type_: str, parent_names: object) -> bool:
    # The queue's tables are pgqueuer's (installed by migration 0007), not in our metadata:
    # autogenerate and `alembic check` must neither drop nor compare them.
    return not (type_ == "table" and name is not None and name.startswith("pgqueuer"))


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    context.configure(
        connection=connection,
        url=url,
        target_metadata=metadata,
        compare_type=True,
        compare_server_default=True,
        include_name=_ours,
        literal_binds=connection is None,
    )


def run_migrations_offline() -> None:
    _configure(url=_url())
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
