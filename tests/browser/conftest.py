"""Browser fixtures, started once for the package: the app under uvicorn on loopback TCP (CORS
listing one of two static origins), a real solve worker on the same database, and Debian's headless
Chromium. Each test gets a fresh browser context, so no token or cache carries over between tests.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.conftest import truncate_all
from tests.kit.browser import (
    LAUNCH_ARGS,
    PageProblems,
    StaticSite,
    TcpServedApp,
    chromium_or_skip,
    served_over_tcp,
    static_site,
)
from tests.kit.sql import SqlAdmin
from tests.kit.worker import SharedWorker, WorkerProcess

PLAYGROUND = Path(__file__).resolve().parents[2] / "service" / "dev" / "static" / "playground"

# A page on another origin that calls the API with a Bearer token, as a single-page app would: it
# streams with the playground's own readEventStream (served beside it, as the file says to copy
# it), and with an EventSource and a ticket. It reports what JavaScript could see.
CLIENT_HTML = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Cross-origin client</title>
<link rel="icon" href="data:,"><script type="module" src="/client.js"></script></head>
<body><p id="ready">loading</p></body></html>
"""
CLIENT_JS = b"""
import { readEventStream } from './sse.js';

const EXPOSED = ['ETag', 'Location', 'X-Request-ID', 'Server'];

async function call(api, token, method, path, body, requestId) {
  const headers = { Authorization: `Bearer ${token}`, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (requestId) headers['X-Request-ID'] = requestId;
  const response = await fetch(`${api}/api/v1${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const seen = Object.fromEntries(EXPOSED.map((name) => [name, response.headers.get(name)]));
  return { status: response.status, headers: seen, body: await response.json() };
}

/** A rejected fetch as data: its error's name and message (a CORS refusal is a TypeError). */
async function attempt(api, token, path) {
  try {
    const response = await fetch(`${api}/api/v1${path}`, { headers: { Authorization: `Bearer ${token}` } });
    return { resolved: true, status: response.status };
  } catch (error) {
    return { resolved: false, name: error.name, message: error.message };
  }
}

async function streamWithFetch(api, token, solutionId) {
  const events = [];
  await readEventStream(`${api}/api/v1/solutions/${solutionId}/events`, {
    headers: { Authorization: `Bearer ${token}` },
    onEvent: ({ type, data, id }) => events.push({ type, id, data: JSON.parse(data) }),
  });
  return events;
}

async function streamWithEventSource(api, token, solutionId) {
  const ticket = await call(api, token, 'POST', `/solutions/${solutionId}/events/ticket`);
  if (ticket.status !== 200) throw new Error(`ticket refused: ${ticket.status}`);
  const url = `${api}/api/v1/solutions/${solutionId}/events?ticket=${encodeURIComponent(ticket.body.ticket)}`;
  const events = [];
  const source = new EventSource(url);
  await new Promise((resolve, reject) => {
    source.addEventListener('progress', (event) =>
      events.push({ type: 'progress', id: event.lastEventId, data: JSON.parse(event.data) }));
    // Closed at the final event: an EventSource would otherwise reconnect with a used ticket.
    source.addEventListener('status', (event) => {
      events.push({ type: 'status', id: event.lastEventId, data: JSON.parse(event.data) });
      source.close();
      resolve();
    });
    source.addEventListener('error', () => {
      source.close();
      reject(new Error(`EventSource failed after ${events.length} events`));
    });
  });
  return { events, expiresIn: ticket.body.expires_in, readyState: source.readyState };
}

window.client = { call, attempt, streamWithFetch, streamWithEventSource };
document.getElementById('ready').textContent = 'ready';
"""


def client_files() -> dict[str, tuple[str, bytes]]:
    return {
        "/": ("text/html; charset=utf-8", CLIENT_HTML),
        "/client.js": ("text/javascript", CLIENT_JS),
        "/sse.js": ("text/javascript", (PLAYGROUND / "sse.js").read_bytes()),
    }


@pytest.fixture(scope="session")
def chromium_path() -> str:
    return chromium_or_skip()


@pytest.fixture(scope="session", autouse=True)
def _needs_chromium(chromium_path: str) -> None:
    """First of all (autouse, widest scope): without a browser nothing is started only to be skipped."""


@pytest.fixture(scope="package")
def listed_site() -> Iterator[StaticSite]:
    with static_site(client_files()) as site:
        yield site


@pytest.fixture(scope="package")
def unlisted_site() -> Iterator[StaticSite]:
    with static_site(client_files()) as site:
        yield site


@pytest.fixture(scope="package")
async def served(
    admin_db: SqlAdmin, migrated_url: str, listed_site: StaticSite, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TcpServedApp]:
    # Once, before the server starts: no job left by an earlier test reaches this worker, and no
    # table is truncated under the server's identity caches while it runs (tests use fresh users).
    await truncate_all(admin_db)
    env = {
        "DATABASE_URL": migrated_url,
        "AUTH_PROVIDERS": "dev",
        "CORS_ORIGINS": listed_site.origin,
        "DATA_DIR": str(tmp_path_factory.mktemp("browser-data")),
        "LOG_LEVEL": "INFO",  # the access log and the refused-preflight line
    }
    async with served_over_tcp(env, tmp_path_factory.mktemp("browser-app")) as app:
        yield app


@pytest.fixture(scope="package")
async def worker(served: TcpServedApp, shared_worker: SharedWorker) -> AsyncIterator[WorkerProcess]:
    yield await shared_worker.acquire()
    await shared_worker.settle()


@pytest.fixture(scope="package")
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium_path, args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


@pytest.fixture
async def problems(page: Page) -> PageProblems:
    # Async: Playwright subscribes to the events on the running loop (there is none in a sync fixture).
    return PageProblems().watch(page)


@pytest.fixture
def email() -> str:
    """A user of this test only (the per-user solve cap and the data never meet another test's)."""
    return f"browser-{uuid.uuid4().hex[:8]}@example.com"
