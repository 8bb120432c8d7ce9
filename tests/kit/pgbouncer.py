"""A real PgBouncer (Debian's `pgbouncer`) in transaction mode in front of a test PostgreSQL.

`running_pgbouncer(server_url)` writes a pgbouncer.ini with one wildcard database entry (any
database name, so a suite's per-run database works as is) pointing at the server `server_url`
names — a TCP address or the Unix-socket directory of the embedded server — listens on a free
loopback port, and stops the process when the block ends.

PgBouncer refuses to run as root. As root it is started with `-u`: as the owner of the server's
socket directory for a Unix socket (the embedded server's data directory is private to its user,
`embedded_postgres`), else as `nobody`. It reads its configuration before it switches user and binds
its own Unix socket after, so only that socket's directory is handed to the user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from service.core.db import asyncpg_connect_args

START_TIMEOUT_SECONDS = 15.0
# Clients: the suite opens many apps at once (each pool up to 25 connections); PgBouncer queues
# them onto a few server connections, which is the point.
MAX_CLIENT_CONN = 1000
DEFAULT_POOL_SIZE = 20


def pgbouncer_binary() -> str | None:
    """The pgbouncer executable on PATH or in /usr/sbin (Debian's place, often not on PATH)."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")


@dataclass(frozen=True)
class PgBouncer:
    host: str
    port: int
    log_path: Path
    pool_size: int
    process: subprocess.Popen[bytes]

    def url(self, server_url: str) -> str:
        """`server_url` (its database and user), reached through this PgBouncer instead."""
        return (
            make_url(server_url)
            .set(host=self.host, port=self.port, query={})
            .render_as_string(hide_password=False)
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def check_alive(self) -> None:
        """Raise, with the end of its log, if the process has exited."""
        if self.process.poll() is not None:
            tail = "\n".join(self.log().splitlines()[-15:])
            raise AssertionError(f"pgbouncer exited with {self.process.returncode}:\n{tail}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as(server_host: str | None) -> str | None:
    """The user to drop to (None when not root)."""
    if os.geteuid() != 0:
        return None
    if server_host and server_host.startswith("/"):
        return pwd.getpwuid(os.stat(server_host).st_uid).pw_name
    return "nobody"


def _quote(value: str) -> str:
    # libpq-style connection string value inside pgbouncer.ini's [databases] entry.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ini(server_url: str, port: int, socket_dir: Path, pool_size: int) -> str:
    args = asyncpg_connect_args(server_url)
    target = [f"host={_quote(args['host'] or '127.0.0.1')}", f"port={args['port'] or 5432}"]
    # auth_type = any: PgBouncer lets every local client in and logs in to the server as the user
    # named here, with its password if the URL has one (trust auth needs none).
    target.append(f"user={_quote(args['user'] or 'postgres')}")
    if args["password"]:
        target.append(f"password={_quote(args['password'])}")
    return "\n".join(
        [
            "[databases]",
            f"* = {' '.join(target)}",
            "",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {port}",
            f"unix_socket_dir = {socket_dir}",
            "auth_type = any",
            "pool_mode = transaction",
            f"default_pool_size = {pool_size}",
            "min_pool_size = 0",
            "reserve_pool_size = 0",
            f"max_client_conn = {MAX_CLIENT_CONN}",
            # A client waits for a server connection rather than failing: a test that needs more
            # than the pool at once is slowed, not broken.
            "query_wait_timeout = 60",
            "server_login_retry = 1",
            "log_connections = 0",
            "log_disconnections = 0",
            "",
        ]
    )


def _wait_listening(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {process.returncode}:\n{log_path.read_text()}")
        # The log line, not just an open port: another process may have taken the port meanwhile.
        if f"listening on 127.0.0.1:{port}" in log_path.read_text(errors="replace"):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"pgbouncer did not listen on {port} in {START_TIMEOUT_SECONDS} s")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # "fast exit": closes every client and server connection
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def running_pgbouncer(server_url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of `server_url`'s server until the block ends."""
    binary = pgbouncer_binary()
    if binary is None:
        raise FileNotFoundError("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    server_host = asyncpg_connect_args(server_url)["host"]
    user = _run_as(server_host)
    # Not under pytest's temporary tree: that is private to root, and PgBouncer may run as another user.
    workdir = Path(tempfile.mkdtemp(prefix="routebook-pgbouncer-"))
    workdir.chmod(0o711)  # traversable for that user; the ini itself stays root's (it may hold a password)
    socket_dir = workdir / "socket"
    socket_dir.mkdir()
    if user is not None:
        account = pwd.getpwnam(user)
        os.chown(socket_dir, account.pw_uid, account.pw_gid)
    log_path = workdir / "pgbouncer.log"
    try:
        # Another process may take the free port before PgBouncer binds it: try a few.
        for attempt in range(3):
            port = _free_port()
            ini = workdir / "pgbouncer.ini"
            ini.write_text(_ini(server_url, port, socket_dir, pool_size))
            command = [binary, *(["-u", user] if user else []), str(ini)]
            with log_path.open("ab") as log:
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
            try:
                _wait_listening(process, port, log_path)
            except RuntimeError:
                _stop(process)
                if attempt == 2:
                    raise
                continue
            try:
                yield PgBouncer("127.0.0.1", port, log_path, pool_size, process)
            finally:
                _stop(process)
            return
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
