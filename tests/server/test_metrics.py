"""Prometheus metrics from real processes: `python -m service` and a solve worker sharing one
directory, as `make run` starts them, scraped on METRICS_PORT after real traffic (a solve, an event
stream, webhooks, a JWKS fetch that fails); a worker serving its own; METRICS_PORT refused on PORT."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from service.solver.example import EXAMPLE_REQUEST
from tests.kit.server import ROOT, RunningServer, free_port, running_server
from tests.kit.sql import SqlAdmin
from tests.kit.waiting import eventually
from tests.kit.worker import solve_worker
from tests.solving.conftest import parse_events
from tests.webhooks.conftest import clerk_signed, clerk_user_event

API = "/api/v1"
# Anything that names one thing rather than a kind of thing: a UUID, a hex id, a long number.
_IDENTIFIER = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-|[0-9a-f]{16,}|[0-9]{5,}", re.IGNORECASE)


async def scrape(port: int, path: str = "/metrics") -> list[Sample]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"http://127.0.0.1:{port}{path}")
    assert response.status_code == 200, f"{response.status_code} {response.text}"
    return [sample for family in text_string_to_metric_families(response.text) for sample in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The sample `name` with (at least) `labels`, summed over its other labels; None if absent."""
    found = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
    return sum(found) if found else None


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    return tmp_path / "metrics"


@pytest.fixture
def metered_server(
    server_env: dict[str, str], tmp_path: Path, metrics_dir: Path, clean_db: SqlAdmin
) -> Iterator[tuple[RunningServer, int]]:
    """A server with metrics on, and Clerk beside dev with a key set URL nobody answers: its
    prefetch fails, which the JWKS metric counts (a subprocess cannot be answered by respx)."""
    port = free_port()
    env = {
        **server_env,
        "METRICS_PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "AUTH_PROVIDERS": "dev,clerk",
        "CLERK_ISSUER": "https://clerk.routebook.test",
        "CLERK_JWKS_URL": f"http://127.0.0.1:{free_port()}/.well-known/jwks.json",
    }
    with running_server(env, tmp_path / "server.log") as server:
        yield server, port


async def test_one_scrape_counts_the_servers_requests_and_the_workers_solves_by_template(
    metered_server: tuple[RunningServer, int], migrated_url: str, metrics_dir: Path, tmp_path: Path
) -> None:
    server, metrics_port = metered_server
    # As `make run` starts it: the server's directory, no listener of its own.
    async with solve_worker(migrated_url, tmp_path / "worker", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)):
        async with httpx.AsyncClient(timeout=60) as http:
            minted = await http.post(server.url("/dev/token"), json={"email": "metrics@example.com"})
            auth = {"Authorization": f"Bearer {minted.json()['access_token']}"}
            session = (
                await http.post(server.url(f"{API}/sessions"), json={"name": "m"}, headers=auth)
            ).json()
            scenario = (
                await http.post(
                    server.url(f"{API}/sessions/{session['id']}/scenarios"),
                    json={"name": "s", "request": copy.deepcopy(EXAMPLE_REQUEST)},
                    headers=auth,
                )
            ).json()
            missing = await http.get(server.url(f"{API}/scenarios/{uuid.uuid4()}"), headers=auth)
            assert missing.status_code == 404
            assert (await http.get(server.url(f"/no/such/{uuid.uuid4()}"))).status_code == 404
            assert (await http.request("PROPFIND", server.url("/health"))).status_code == 405
            queued = await http.post(
                server.url(f"{API}/scenarios/{scenario['id']}/solve"), json={"time_limit_s": 1}, headers=auth
            )
            assert queued.status_code == 202, queued.text
            stream = await http.get(server.url(f"{API}/solutions/{queued.json()['id']}/events"), headers=auth)
            assert parse_events(stream.text)[-1].data == {"status": "succeeded"}
            signed, headers = clerk_signed(clerk_user_event("user_metrics", kind="user.created"))
            assert (
                await http.post(server.url(f"{API}/webhooks/clerk"), content=signed, headers=headers)
            ).status_code == 204
            forged = {**headers, "svix-signature": "v1,AAAA"}
            assert (
                await http.post(server.url(f"{API}/webhooks/clerk"), content=signed, headers=forged)
            ).status_code == 401
            # Clerk's keys never came: not ready, a 503 counted by its cause.
            assert (await http.get(server.url("/ready"))).status_code == 503
            # Metrics are never on the API's own port.
            assert (await http.get(server.url("/metrics"))).status_code == 404

        async def solve_counted() -> bool:
            return value(await scrape(metrics_port), "routebook_solves_total", outcome="succeeded") == 1

        await eventually(solve_counted, timeout=30)

    async def requests_counted() -> bool:
        # Requests are handed to the metrics once a second: wait for the last one (an unmatched GET).
        samples = await scrape(metrics_port)
        return value(samples, "routebook_http_requests_total", route="unmatched", method="GET") == 2

    await eventually(requests_counted, timeout=10)
    samples = await scrape(metrics_port)
    requests = [s for s in samples if s.name == "routebook_http_requests_total"]
    routes = {s.labels["route"] for s in requests}
    assert {
        "/dev/token",
        f"{API}/sessions",
        f"{API}/sessions/{{session_id}}/scenarios",
        f"{API}/scenarios/{{scenario_id}}",
        f"{API}/scenarios/{{scenario_id}}/solve",
        f"{API}/solutions/{{solution_id}}/events",
        f"{API}/webhooks/{{provider}}",
        "/health",
        "unmatched",
    } <= routes
    assert (
        value(
            samples, "routebook_http_requests_total", route=f"{API}/scenarios/{{scenario_id}}", status="4xx"
        )
        == 1
    )
    assert value(samples, "routebook_http_requests_total", route="unmatched", method="GET", status="4xx") == 2
    assert value(samples, "routebook_http_requests_total", route="/health", method="other") == 1
    assert {s.labels["status"] for s in requests} <= {"1xx", "2xx", "3xx", "4xx", "5xx"}
    assert value(samples, "routebook_http_request_duration_seconds_count", route=f"{API}/sessions") == 1
    # No label anywhere names one thing: no id, no raw path.
    for sample in samples:
        for label, text in sample.labels.items():
            if label != "le":  # a histogram's bucket bound
                assert not _IDENTIFIER.search(text), (sample.name, label, text)

    assert value(samples, "routebook_unavailable_responses_total", cause="identity_keys_unavailable") == 1
    assert value(samples, "routebook_http_requests_total", route="/ready", status="5xx") == 1
    assert value(samples, "routebook_webhook_deliveries_total", provider="clerk", outcome="applied") == 1
    assert (
        value(samples, "routebook_webhook_deliveries_total", provider="clerk", outcome="bad_signature") == 1
    )
    assert (
        value(samples, "routebook_jwks_fetches_total", provider="clerk", outcome="network_error") or 0
    ) >= 1
    assert value(samples, "routebook_solve_duration_seconds_count", outcome="succeeded") == 1
    assert value(samples, "routebook_solve_iterations_count") == 1
    assert value(samples, "routebook_solve_pickup_seconds_count") == 1
    assert value(samples, "routebook_solve_queue_depth", status="queued") is not None
    assert value(samples, "routebook_solve_queue_depth", status="picked") is not None
    assert value(samples, "routebook_sse_streams_open") == 0  # the stream ended

    async def pool_idle() -> bool:
        # Every connection back in its pool (each process reports its pool once a second).
        now = await scrape(metrics_port)
        return (
            value(now, "routebook_db_pool_connections_in_use") == value(now, "routebook_db_pool_waiting") == 0
        )

    await eventually(pool_idle, timeout=10)
    with pytest.raises(AssertionError, match="404"):
        await scrape(metrics_port, "/other")  # /metrics only


async def test_a_worker_with_a_metrics_port_serves_its_own(
    migrated_url: str, tmp_path: Path, clean_db: SqlAdmin
) -> None:
    port = free_port()
    async with solve_worker(migrated_url, tmp_path / "worker", METRICS_PORT=str(port)):

        async def depth_measured() -> bool:
            return value(await scrape(port), "routebook_solve_queue_depth", status="queued") == 0

        await eventually(depth_measured, timeout=30)


def test_metrics_port_equal_to_the_api_port_is_refused(server_env: dict[str, str]) -> None:
    port = str(free_port())
    environment = {**os.environ, **server_env, "PORT": port, "METRICS_PORT": port}
    finished = subprocess.run(
        [sys.executable, "-m", "service"], cwd=ROOT, env=environment, capture_output=True, timeout=60
    )
    assert finished.returncode != 0
    assert b"METRICS_PORT must differ from PORT" in finished.stderr
