"""Shared pieces of the benchmarks: a database, a uvicorn subprocess, a tiny keep-alive load generator.

The load generator speaks raw HTTP/1.1 over asyncio streams: an httpx client costs more CPU per
request than the endpoint under test, and on a 2-core machine it would measure itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.devdb import ensure_database, start_embedded
from service.migrations import upgrade

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    """DATABASE_URL's server (a fresh database on it), else a throwaway embedded PostgreSQL; migrated."""
    name = f"routebook_bench_{os.getpid()}"
    base = os.environ.get("DATABASE_URL")
    if base:
        from sqlalchemy.engine import make_url

        from service.config import Settings
        from service.devdb import drop_database

        normalized = Settings(_env_file=None, environment="test", database_url=base).database_url
        url = make_url(str(normalized)).set(database=name).render_as_string(hide_password=False)
        asyncio.run(ensure_database(url))
        try:
            upgrade(url)
            yield url
        finally:
            asyncio.run(drop_database(url))
        return
    embedded = start_embedded(Path(tempfile.mkdtemp(prefix="routebook-bench-")) / "pgdata", persistent=False)
    url = embedded.url(name)
    asyncio.run(ensure_database(url))
    upgrade(url)
    try:
        yield url
    finally:
        embedded.stop()


DEV_ISSUER = "urn:routebook:dev"


def app_environment(url: str, name: str) -> tuple[dict[str, str], dict[str, str]]:
    """(environment for the app under uvicorn, Authorization header of a dev-issuer user)."""
    from service.providers.dev import DevIssuer

    data_dir = Path(tempfile.mkdtemp(prefix=f"routebook-{name}-"))
    token = DevIssuer.load_or_create(data_dir / "dev-issuer.pem", DEV_ISSUER).mint(
        subject=name, email=f"{name}@example.com", ttl_seconds=3600
    )
    env = {
        "ENVIRONMENT": "development",
        "DATABASE_URL": url,
        "AUTH_PROVIDERS": "dev",
        "DEV_ISSUER": DEV_ISSUER,
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
    }
    return env, {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def uvicorn_server(app: str, env: dict[str, str], *, factory: bool = False) -> Iterator[tuple[int, int]]:
    """(port, pid) of `uvicorn app` — one worker, uvloop, httptools — until the block ends."""
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--workers", "1", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    if factory:
        command.append("--factory")
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{app} did not start")
            time.sleep(0.1)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(timeout=15)


@dataclass
class LoadResult:
    requests: int
    seconds: float
    statuses: set[int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


async def _worker(port: int, request: bytes, stop_at: float, statuses: set[int]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    try:
        while time.perf_counter() < stop_at:
            writer.write(request)
            status_line = await reader.readline()
            statuses.add(int(status_line.split()[1]))
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            done += 1
    finally:
        writer.close()
    return done


async def _load(port: int, request: bytes, seconds: float, connections: int) -> LoadResult:
    statuses: set[int] = set()
    started = time.perf_counter()
    counts = await asyncio.gather(
        *(_worker(port, request, started + seconds, statuses) for _ in range(connections))
    )
    return LoadResult(sum(counts), time.perf_counter() - started, statuses)


def load(
    port: int,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    seconds: float = 4.0,
    connections: int = 16,
) -> LoadResult:
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return asyncio.run(_load(port, request, seconds, connections))


def median(values: list[float]) -> float:
    return statistics.median(values)


def peak_rss_bytes(pid: int) -> int:
    """The process's high-water resident set (VmHWM) so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
