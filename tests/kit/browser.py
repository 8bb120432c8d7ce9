"""What the browser tests run against: Debian's headless Chromium (driven by Playwright for Python,
whose own browser download is not used), the app under a real uvicorn on a loopback TCP port (a page
needs an http origin, and /dev/token answers loopback clients only), static pages served from
other origins, and a record of what went wrong on a page.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from playwright.async_api import ConsoleMessage, Page, Request, Response

from tests.kit.launcher import LaunchedProcess, launch
from tests.kit.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
# ROUTEBOOK_CHROMIUM names a browser explicitly; else the first of these that exists.
CHROMIUM_ENV = "ROUTEBOOK_CHROMIUM"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Set in CI: there a missing browser fails the run rather than skipping the browser tests quietly.
REQUIRE_ENV = "ROUTEBOOK_REQUIRE_BROWSER"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",  # root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_INHERITED_OUT = ("DATABASE_URL", "DATABASE_DIRECT_URL", "TEST_DATABASE_URL", "CORS_ORIGINS")


def find_chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_or_skip() -> str:
    """The Chromium executable; a skip naming what to install, or a failure when REQUIRE_ENV=1."""
    explicit = os.environ.get(CHROMIUM_ENV)
    if explicit:
        # Named on purpose: a wrong path is a mistake to report, never a reason to skip.
        if not os.access(explicit, os.X_OK):
            pytest.fail(f"{CHROMIUM_ENV}={explicit} is not an executable file", pytrace=False)
        return explicit
    found = find_chromium()
    if found:
        return found
    message = (
        f"no Chromium on PATH (looked for {', '.join(CHROMIUM_CANDIDATES)}; {CHROMIUM_ENV} names one "
        "elsewhere): install it (Debian: apt-get install chromium) to run the browser tests"
    )
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 and {message}", pytrace=False)
    pytest.skip(message)


# --- the app on TCP -----------------------------------------------------------------------------


@dataclass
class TcpServedApp:
    origin: str
    log_path: Path
    process: LaunchedProcess

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.origin, headers=headers, timeout=10, **kwargs)

    def log_records(self) -> list[dict[str, Any]]:
        """Every JSON log line so far; anything else (a traceback) as level RAW."""
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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _stop(process: LaunchedProcess) -> None:
    if process.poll() is None:
        process.terminate()  # graceful: the lifespan closes the pool and the listener
        try:
            await asyncio.wait_for(process.wait_async(), 15)
        except TimeoutError:
            process.kill()
            await process.wait_async()


async def _start_on_free_port(environment: Mapping[str, str], log_path: Path) -> TcpServedApp | None:
    """uvicorn on a port found free, once it answers /health; None if another took the port first."""
    port = _free_port()
    command = ["service.main:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1", "--no-access-log", "--log-level", "warning"]
    process = launch("uvicorn", environment, log_path, command)
    served = TcpServedApp(f"http://127.0.0.1:{port}", log_path, process)
    async with httpx.AsyncClient(base_url=served.origin, timeout=5) as client:

        async def answering_or_exited() -> bool:
            if process.poll() is not None:
                return True
            try:
                return (await client.get("/health")).status_code == 200
            except httpx.TransportError:
                return False

        try:
            await eventually(answering_or_exited, timeout=60, every=0.1)
        except BaseException:
            await _stop(process)
            raise
    if process.poll() is None:
        return served
    output = log_path.read_text(errors="replace")  # noqa: ASYNC240 (a small log, once)
    if "address already in use" in output.lower():
        return None
    raise AssertionError(f"uvicorn exited with {process.returncode}:\n{output[-3000:]}")


@asynccontextmanager
async def served_over_tcp(env: Mapping[str, str], workdir: Path) -> AsyncIterator[TcpServedApp]:
    """`uvicorn service.main:app` on a free 127.0.0.1 port, with `env` on a clean environment.

    A port found free may be taken by another run before uvicorn binds it: then another is tried.
    """
    workdir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (a test's temp dir: instant)
    environment = {k: v for k, v in os.environ.items() if k not in _INHERITED_OUT}
    environment.update({"ENVIRONMENT": "test", "LOG_FORMAT": "json", **env})
    served = None
    for attempt in range(1, 4):
        served = await _start_on_free_port(environment, workdir / f"app-{attempt}.log")
        if served is not None:
            break
    if served is None:
        raise AssertionError(f"no free port found for uvicorn in 3 attempts (logs in {workdir})")
    try:
        yield served
    finally:
        await _stop(served.process)


# --- other origins ------------------------------------------------------------------------------


@dataclass
class StaticSite:
    """Fixed files on 127.0.0.1 at a port of its own (bound at once: nothing to race for)."""

    files: dict[str, tuple[str, bytes]]
    server: ThreadingHTTPServer = field(init=False)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@contextmanager
def static_site(files: Mapping[str, tuple[str, bytes]]) -> Iterator[StaticSite]:
    """Serves `files` (path → (content type, body)) until the block ends; anything else is 404."""
    site = StaticSite(dict(files))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = site.files.get(urlsplit(self.path).path)
            if found is None:
                self.send_error(404)
                return
            content_type, body = found
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test reports what matters; no noise on stderr

    site.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    site.server.daemon_threads = True
    thread = threading.Thread(target=site.server.serve_forever, name="static-site", daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.server.shutdown()
        site.server.server_close()
        thread.join(10)


# --- what went wrong on a page ------------------------------------------------------------------


def _is_stream_end(request: Request) -> bool:
    # A streamed fetch that the server ended cleanly is still reported as aborted by Playwright
    # (microsoft/playwright#42742): only that one, on an event stream, is not a failure.
    return request.failure == "net::ERR_ABORTED" and urlsplit(request.url).path.endswith("/events")


@dataclass
class PageProblems:
    """Console errors, uncaught exceptions, failed requests and HTTP errors a page met."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    error_responses: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> PageProblems:
        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.console_errors.append(f"{message.text} at {message.location}")

        def on_failed(request: Request) -> None:
            if not _is_stream_end(request):
                self.failed_requests.append(f"{request.method} {request.url}: {request.failure}")

        def on_response(response: Response) -> None:
            if response.status >= 400:
                self.error_responses.append(f"{response.request.method} {response.url}: {response.status}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.page_errors.append(repr(error)))
        page.on("requestfailed", on_failed)
        page.on("response", on_response)
        return self

    def assert_none(self) -> None:
        found = {name: value for name, value in vars(self).items() if value}
        assert not found, f"the page met problems: {found}"
