"""Shared pieces of the benchmarks: a database, a uvicorn subprocess, a tiny keep-alive load generator.

The load generator speaks raw HTTP/1.1 over asyncio streams: an httpx client costs more CPU per
request than the endpoint under test, and on a 2-core machine it would measure itself.
Further down: requests of any method and body, the CPU time of a server's pid, percentiles, and a
/health probe (in its own process) run beside a pluggable background load.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvloop

from service.core.migrations import upgrade
from service.dev.devdb import ensure_database, start_embedded

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    """DATABASE_URL's server (a fresh database on it), else a throwaway embedded PostgreSQL; migrated."""
    name = f"routebook_bench_{os.getpid()}"
    base = os.environ.get("DATABASE_URL")
    if base:
        from sqlalchemy.engine import make_url

        from service.config import Settings
        from service.dev.devdb import drop_database

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


@contextlib.contextmanager
def bench_databases(*labels: str) -> Iterator[list[str]]:
    """Like bench_database, several databases side by side on one server (one URL per label)."""
    names = [f"routebook_bench_{label}_{os.getpid()}" for label in labels]
    base = os.environ.get("DATABASE_URL")
    if base:
        from sqlalchemy.engine import make_url

        from service.config import Settings
        from service.dev.devdb import drop_database

        normalized = Settings(_env_file=None, environment="test", database_url=base).database_url
        urls = [
            make_url(str(normalized)).set(database=name).render_as_string(hide_password=False)
            for name in names
        ]
        try:
            for url in urls:
                asyncio.run(ensure_database(url))
                upgrade(url)
            yield urls
        finally:
            for url in urls:
                asyncio.run(drop_database(url))
        return
    embedded = start_embedded(Path(tempfile.mkdtemp(prefix="routebook-bench-")) / "pgdata", persistent=False)
    urls = [embedded.url(name) for name in names]
    try:
        for url in urls:
            asyncio.run(ensure_database(url))
            upgrade(url)
        yield urls
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
def uvicorn_server(
    app: str,
    env: dict[str, str],
    *,
    factory: bool = False,
    workers: int = 1,
    root: Path = ROOT,
    loop: str = "uvloop",
) -> Iterator[tuple[int, int]]:
    """(port, pid) of `uvicorn app` — `workers` processes (pid: the first; with several, their
    supervisor), uvloop (or `loop`), httptools — until the block ends. `root`: the checkout whose
    code it runs."""
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
        "--loop", loop, "--http", "httptools", "--workers", str(workers), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    if factory:
        command.append("--factory")
    process = subprocess.Popen(command, cwd=root, env={**os.environ, **env})
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


# -- any method and body, CPU time of a process, latency percentiles ------------------------------
# (bench_planning, bench_loop; the functions above are kept as they are for the older benchmarks)


def http_request(
    method: str, path: str, *, headers: Mapping[str, str] | None = None, body: bytes = b""
) -> bytes:
    """The raw bytes of one HTTP/1.1 keep-alive request."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of one response with a Content-Length (every response these servers send)."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


@dataclass
class CountedLoad:
    requests: int
    seconds: float
    statuses: Counter[int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


async def _cycling_worker(
    port: int, requests: Sequence[bytes], stop_at: float, statuses: Counter[int]
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    try:
        for request in itertools.cycle(requests):
            if time.perf_counter() >= stop_at:
                break
            # Small requests: the write never blocks, so no drain (it would cost a coroutine each).
            writer.write(request)
            try:
                status, _ = await read_response(reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                statuses[0] += 1  # 0: the server dropped the connection (an error before a response)
                break
            statuses[status] += 1
            done += 1
    finally:
        writer.close()
    return done


async def _load_cycles(port: int, per_connection: Sequence[Sequence[bytes]], seconds: float) -> CountedLoad:
    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    counts = await asyncio.gather(
        *(_cycling_worker(port, requests, started + seconds, statuses) for requests in per_connection)
    )
    return CountedLoad(sum(counts), time.perf_counter() - started, statuses)


def load_requests(
    port: int, per_connection: Sequence[Sequence[bytes]], *, seconds: float = 3.0
) -> CountedLoad:
    """One keep-alive connection per entry, each sending its requests (see http_request) in turn,
    again and again, one at a time, for `seconds`; the status of every response is counted.

    On uvloop: the generator then costs about half the CPU per request of asyncio's own loop, which
    keeps it well below the cheapest server it measures."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_load_cycles(port, per_connection, seconds))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process (all its threads) has used so far, from /proc/<pid>/stat."""
    # The command name in parentheses may hold spaces: split after its closing parenthesis.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """cpu_seconds of the process and of its descendants still running (a server's worker processes)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += cpu_seconds(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
    return total


def backend_cpu_seconds(database: str) -> dict[int, float]:
    """cpu_seconds of each PostgreSQL backend of `database` running on this machine, by pid (its
    process title: `postgres: [<cluster>: ]<user> <database> ...`)."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].split()
            if title[:1] == [b"postgres:"] and database.encode() in title[1:4]:
                found[int(entry.name)] = cpu_seconds(int(entry.name))
    return found


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / os.sysconf("SC_CLK_TCK"), total / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0–100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


# -- /health latency, measured from another process, while a background load runs ----------------

R = TypeVar("R")
# Runs until the event is set, then returns its own tally: POSTs of big documents, solves, ...
BackgroundLoad = Callable[[asyncio.Event], Coroutine[Any, Any, R]]


@dataclass(frozen=True)
class ProbeResult:
    seconds: list[float]  # per /health request, from its send to the end of its response
    statuses: Counter[int]
    # Per request, the part of those seconds the probe itself spent runnable but off the CPU (the
    # kernel ran other processes): latency the server did not cause.
    queued: list[float] = field(default_factory=list)
    # When the probe ran (time.perf_counter: CLOCK_MONOTONIC, the same clock in every process).
    started: float = 0.0
    ended: float = 0.0


def thread_schedstat() -> Callable[[], tuple[float, float]]:
    """A reader of the calling thread's (seconds on a CPU, seconds runnable but waiting for one) so
    far, from /proc/thread-self/schedstat (a read costs a microsecond)."""
    fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)

    def read() -> tuple[float, float]:
        on_cpu, queued, _ = os.pread(fd, 128, 0).split()
        return int(on_cpu) / 1e9, int(queued) / 1e9

    return read


async def _probe(port: int, seconds: float, interval: float) -> ProbeResult:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = http_request("GET", "/health")
    latencies: list[float] = []
    queued: list[float] = []
    statuses: Counter[int] = Counter()
    schedstat = thread_schedstat()
    started = time.perf_counter()
    try:
        for tick in range(int(seconds / interval)):
            due = started + tick * interval
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            waited = schedstat()[1]
            sent = time.perf_counter()
            writer.write(request)
            status, _ = await read_response(reader)
            done = time.perf_counter()
            statuses[status] += 1
            latencies.append(done - sent)
            queued.append(schedstat()[1] - waited)
    finally:
        writer.close()
    return ProbeResult(latencies, statuses, queued, started, time.perf_counter())


def probe_health(port: int, seconds: float, interval: float) -> ProbeResult:
    """GET /health every `interval` seconds on one keep-alive connection (meant for its own process);
    a request that comes back late delays the next ones, which are then sent at once."""
    return asyncio.run(_probe(port, seconds, interval))


def _started(nice: int | None = None) -> None:
    """Run once in the probe's process so that its start and imports fall before the measurement;
    `nice`: the probe's niceness (else this process's, inherited)."""
    if nice is not None:
        os.setpriority(os.PRIO_PROCESS, 0, nice)


def renice_tree(pid: int, nice: int) -> None:
    """Every thread of the process and of its descendants at niceness `nice` (Linux keeps a niceness
    per thread; setpriority on a pid changes its main thread only). Below 0 needs CAP_SYS_NICE."""
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for task in Path(f"/proc/{current}/task").iterdir():
                os.setpriority(os.PRIO_PROCESS, int(task.name), nice)
                pending += [int(child) for child in (task / "children").read_text().split()]


async def idle_load(stop: asyncio.Event) -> None:
    """The baseline's background load: none."""
    await stop.wait()


async def health_under_load(
    port: int,
    load: BackgroundLoad[R],
    *,
    seconds: float = 15.0,
    warmup: float = 1.0,
    interval: float = 0.02,
    nice: int | None = None,
) -> tuple[ProbeResult, R]:
    """/health latency measured from a separate process for `seconds`, while `load` runs in this one.

    The load starts `warmup` seconds before the probe, so the probe sees it in its stride, and is
    stopped when the probe ends; its own result is returned beside the probe's. `nice`: the probe
    process's niceness (default: this process's).
    """
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        await loop.run_in_executor(pool, _started, nice)
        stop = asyncio.Event()
        task = asyncio.create_task(load(stop))
        try:
            await asyncio.sleep(warmup)
            probe = await loop.run_in_executor(pool, probe_health, port, seconds, interval)
        finally:
            stop.set()
        return probe, await task
