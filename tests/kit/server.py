"""A real `python -m service` in a subprocess: its port, its log records, raw connections to it.

For what only a real server shows: sockets, timeouts, signals, uvicorn's own behaviour. The log
(JSON lines, stdout and stderr together) goes to a file, so a chatty server never blocks on a pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.kit.launcher import LaunchedProcess, launch
from tests.kit.waiting import until

ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 60.0  # a cold start on a busy 2-core machine: imports, lifespan, the database


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    process: LaunchedProcess
    port: int
    log_path: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        """Every log line, parsed; a line that is not JSON (a crash's bare output) as {"raw": line}."""
        records: list[dict[str, Any]] = []
        for line in self.log_text().splitlines():
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                records.append({"raw": line})
        return records

    def with_request_id(self, request_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("request_id") == request_id]

    def access(self, request_id: str) -> list[dict[str, Any]]:
        return [r for r in self.with_request_id(request_id) if r.get("logger") == "routebook.access"]

    def healthy(self, probe: httpx.Client) -> bool:
        try:
            return probe.get(self.url("/health")).status_code == 200
        except httpx.HTTPError:
            return False

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)


@contextlib.contextmanager
def running_server(
    env: Mapping[str, str], log_path: Path, *, args: Sequence[str] = ()
) -> Iterator[RunningServer]:
    """`python -m service` on a free port with `env` over this process's environment, serving
    until the block ends (then SIGTERM, and SIGKILL if it will not stop)."""
    port = free_port()
    environment = {**os.environ, "HOST": "127.0.0.1", **env, "PORT": str(port)}
    process = launch("service", environment, log_path, args)
    server = RunningServer(process, port, log_path)
    try:
        # One client for every probe: a new one loads the CA bundle each time (about 20 ms of CPU,
        # a second or more over a start on a busy machine).
        with httpx.Client(timeout=2) as probe:
            until(
                lambda: process.poll() is not None or server.healthy(probe),
                timeout=STARTUP_SECONDS,
                every=0.1,
            )
        if process.poll() is not None:
            raise AssertionError(f"python -m service exited with {process.returncode}:\n{server.log_text()}")
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
