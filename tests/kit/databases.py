"""The run's PostgreSQL: one server per `pytest` run, one migrated template, one clone per worker.

The controller (the plain pytest process, or xdist's controller when tests run in parallel) starts
the server once — the embedded one, or the server TEST_DATABASE_URL names — migrates a template
database once, and clones it (`CREATE DATABASE … TEMPLATE`, a file copy: milliseconds, where
migrating takes seconds) into a database of each worker's own. Workers never start a server and
never migrate; they are told their database's URL. Everything the run created is dropped at its
end, so concurrent runs against one server never collide (every name carries the run's id).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from service.core.db import asyncpg_connect_args
from service.core.migrations import upgrade
from service.dev.devdb import EmbeddedPostgres, start_embedded

# Settings for a disposable test server only (never `make run`'s): a crash loses nothing we keep,
# and without the flushes every commit and TRUNCATE costs a fraction of what it does durably.
_DISPOSABLE_SERVER = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def _with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


async def _admin(url: str) -> asyncpg.Connection:
    args = asyncpg_connect_args(url)
    args.update(database="postgres", user=args["user"] or "postgres", timeout=10)
    return await asyncpg.connect(**args)


async def _execute(url: str, *statements: str) -> None:
    conn = await _admin(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@dataclass
class TestServer:
    """The run's server, its template database and the clones made from it."""

    url: str  # any database on the server; only its address and login are used
    run_id: str
    embedded: EmbeddedPostgres | None = None
    parent: Path | None = None
    clones: list[str] = field(default_factory=list)

    @property
    def template(self) -> str:
        return f"routebook_test_{self.run_id}_template"

    @classmethod
    def start(cls, server_url: str | None) -> TestServer:
        """`server_url`'s server, or an embedded one started now; then the template, migrated."""
        run_id = uuid.uuid4().hex[:10]
        if server_url is not None:
            server = cls(url=server_url, run_id=run_id)
        else:
            # Not under pytest's temporary tree: each new pytest run on this machine makes that tree
            # private to root again, and PgBouncer, running as the server's user, would lose its way
            # to the server's socket mid-run.
            parent = Path(tempfile.mkdtemp(prefix="routebook-test-postgres-"))
            embedded = start_embedded(parent / "pgdata", persistent=False)
            server = cls(url=embedded.url("postgres"), run_id=run_id, embedded=embedded, parent=parent)
            server._stop_on_sigterm()
            settings = [f"ALTER SYSTEM SET {name} = '{value}'" for name, value in _DISPOSABLE_SERVER.items()]
            asyncio.run(_execute(server.url, *settings, "SELECT pg_reload_conf()"))
        try:
            asyncio.run(_execute(server.url, f'CREATE DATABASE "{server.template}"'))
            upgrade(_with_database(server.url, server.template))
        except BaseException:
            server.stop()
            raise
        return server

    def clone(self, name: str) -> str:
        """A new database copied from the migrated template; its URL."""
        database = f"routebook_test_{self.run_id}_{name}"
        self.clones.append(database)
        asyncio.run(
            _execute(
                self.url,
                f'CREATE DATABASE "{database}" TEMPLATE "{self.template}"',
                # Per database, so it holds on a shared server too (PostgreSQL 15 in CI) without
                # touching anyone else's: commits stop waiting for the disk.
                f"ALTER DATABASE \"{database}\" SET synchronous_commit = 'off'",
            )
        )
        return _with_database(self.url, database)

    def stop(self) -> None:
        """Drop every database of this run, then stop the embedded server (if it is ours)."""
        try:
            names = [*self.clones, self.template]
            asyncio.run(_execute(self.url, *(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in names)))
        finally:
            if self.embedded is not None:
                self.embedded.stop()
            if self.parent is not None:
                shutil.rmtree(self.parent, ignore_errors=True)

    def _stop_on_sigterm(self) -> None:
        """A CI timeout sends SIGTERM, which skips atexit: stop the embedded server first."""
        embedded = self.embedded
        assert embedded is not None

        def handler(signum: int, _frame: object) -> None:
            embedded.stop()
            os._exit(128 + signum)

        signal.signal(signal.SIGTERM, handler)
