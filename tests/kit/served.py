"""The app served by a real uvicorn in a process of its own, as production runs it.

It listens on a Unix socket (no port to race other test runs for) and logs JSON to a file the
test reads afterwards: an exception that escaped to uvicorn ("Exception in ASGI application"),
or one the catch-all handler had to render, shows up there even when the client saw a 503.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.kit.launcher import LaunchedProcess, launch
from tests.kit.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
# What the test process may have set that must not leak into the served app's configuration.
_INHERITED_OUT = ("DATABASE_URL", "DATABASE_DIRECT_URL", "TEST_DATABASE_URL")


@dataclass
class ServedApp:
    socket: Path
    log_path: Path
    process: LaunchedProcess

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(uds=str(self.socket), retries=0)
        return httpx.AsyncClient(transport=transport, base_url="http://routebook.test", **kwargs)

    def log_records(self) -> list[dict[str, Any]]:
        """Every log line so far; a line that is not JSON (an interpreter traceback) as level RAW."""
        records: list[dict[str, Any]] = []
        for line in self.log_path.read_bytes().splitlines():
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = None
            records.append(record if isinstance(record, dict) else {"level": "RAW", "msg": line.decode()})
        return records


@asynccontextmanager
async def served_app(env: Mapping[str, str], workdir: Path) -> AsyncIterator[ServedApp]:
    """`uvicorn service.main:app` with `env` on top of a clean environment, until the block ends."""
    socket, log_path = workdir / "app.sock", workdir / "app.log"
    environment = {k: v for k, v in os.environ.items() if k not in _INHERITED_OUT}
    environment.update({"ENVIRONMENT": "test", "LOG_FORMAT": "json", **env})
    command = ["service.main:app", "--uds", str(socket)]
    command += ["--workers", "1", "--no-access-log", "--log-level", "warning"]
    # A load client's connection may sit idle past uvicorn's 5 s keep-alive on a loaded machine; the
    # server then closes it just as the client sends its next request, which HTTP/1.1 allows and a
    # client answers by retrying. That race is the client's, not what these tests measure.
    command += ["--timeout-keep-alive", "600"]
    process = launch("uvicorn", environment, log_path, command)
    served = ServedApp(socket, log_path, process)
    try:
        async with served.client(timeout=5) as client:

            async def healthy() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"uvicorn exited: {log_path.read_text()[-2000:]}")
                try:
                    return (await client.get("/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(healthy, timeout=60, every=0.1)
        yield served
    finally:
        if process.poll() is None:
            process.terminate()  # uvicorn shuts down gracefully: the app's lifespan closes the pool
            try:
                await asyncio.wait_for(process.wait_async(), 15)
            except TimeoutError:
                process.kill()
                await process.wait_async()
