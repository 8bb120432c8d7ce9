"""Prometheus metrics: what every process records, and the listener that serves them.

Off unless METRICS_PORT is set; then the entry point (`python -m service`, `python -m service.worker`,
`make run`) calls `start()` before anything records: it takes PROMETHEUS_MULTIPROC_DIR (or creates a
private directory), wipes it, exports it to its children, and serves `GET /metrics` on
METRICS_HOST:METRICS_PORT from a thread of its own — never on the API's port.

prometheus-client's multi-process mode: each process writes its values to files of its own in that
directory, and a scrape adds up every process's files, so one listener serves a server's uvicorn
workers, or `make run`'s server and worker together. A process records when the directory is in its
environment (`record()`): the entry point's own, its uvicorn workers, and a worker that `make run`
starts without METRICS_PORT of its own. Solver and offload children record nothing.

Call sites use the functions at the bottom; with metrics off each is a call and a test for None.
"""

from __future__ import annotations

import atexit
import bisect
import logging
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

    from service.config import Settings

log = logging.getLogger("routebook.metrics")

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
PATH = "/metrics"
# The route label of a request that matched no route (a raw path would put ids and garbage into labels).
UNMATCHED = "unmatched"
SOLVE_SECONDS_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
PICKUP_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# prometheus-client's default latency buckets, written out: the request tally bins by them itself.
HTTP_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
ITERATION_BUCKETS = (0, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)


class Instruments:
    """Every metric of the process, built once (`record()`), after the directory is in place:
    prometheus-client picks its multi-process storage when a metric is built."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.http_requests: Counter = Counter(
            "routebook_http_requests", "HTTP requests answered", ["route", "method", "status"]
        )
        self.http_duration: Histogram = Histogram(
            "routebook_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response",
            ["route", "method"],
            buckets=HTTP_SECONDS_BUCKETS,
        )
        self.unavailable: Counter = Counter(
            "routebook_unavailable_responses", "503 responses, by cause", ["cause"]
        )
        self.pool_in_use: Gauge = Gauge(
            "routebook_db_pool_connections_in_use",
            "Pooled database connections lent out",
            multiprocess_mode="livesum",
        )
        self.pool_waiting: Gauge = Gauge(
            "routebook_db_pool_waiting",
            "Transactions waiting for a pooled connection",
            multiprocess_mode="livesum",
        )
        self.jwks_fetches: Counter = Counter(
            "routebook_jwks_fetches", "Key set fetches from identity providers", ["provider", "outcome"]
        )
        self.webhook_deliveries: Counter = Counter(
            "routebook_webhook_deliveries",
            "Webhook deliveries received from identity providers",
            ["provider", "outcome"],
        )
        self.sse_streams: Gauge = Gauge(
            "routebook_sse_streams_open", "Event streams open", multiprocess_mode="livesum"
        )
        self.queue_depth: Gauge = Gauge(
            "routebook_solve_queue_depth",
            "Solve jobs in the queue, by status (queued: waiting; picked: running)",
            ["status"],
            multiprocess_mode="mostrecent",
        )
        self.pickup: Histogram = Histogram(
            "routebook_solve_pickup_seconds",
            "Time from a solve's queueing to its first run's start",
            buckets=PICKUP_SECONDS_BUCKETS,
        )
        self.solves: Counter = Counter("routebook_solves", "Solve runs ended, by outcome", ["outcome"])
        self.solve_duration: Histogram = Histogram(
            "routebook_solve_duration_seconds",
            "Time a solve run spent in its solver process",
            ["outcome"],
            buckets=SOLVE_SECONDS_BUCKETS,
        )
        self.solve_iterations: Histogram = Histogram(
            "routebook_solve_iterations",
            "Solver iterations of a solve run with a result",
            buckets=ITERATION_BUCKETS,
        )


_instruments: Instruments | None = None


def enabled() -> bool:
    return _instruments is not None


def record() -> bool:
    """Build this process's instruments if a metrics directory is in its environment; True if so."""
    global _instruments
    if _instruments is None and os.environ.get(MULTIPROC_DIR):
        from prometheus_client import values

        # prometheus-client chooses its storage when first imported; if something imported it
        # before the directory was exported, it chose in-memory values, which no scrape would see.
        if values.ValueClass is values.MutexValue:
            values.ValueClass = values.get_value_class()
        _instruments = Instruments()
    return _instruments is not None


def start(settings: Settings) -> str | None:
    """For an entry point, before it starts any other process: the directory made ready and
    exported, and the listener started. Its address, or None when METRICS_PORT is unset."""
    if settings.metrics_port is None:
        return None
    directory = _own_directory(settings.prometheus_multiproc_dir)
    os.environ[MULTIPROC_DIR] = str(directory)
    record()
    try:
        _listen(settings.metrics_host, settings.metrics_port, directory)
    except OSError as exc:
        raise SystemExit(
            f"METRICS_PORT: cannot listen on {settings.metrics_host}:{settings.metrics_port} ({exc.strerror})"
        ) from None
    return f"http://{_url_host(settings.metrics_host)}:{settings.metrics_port}{PATH}"


def _own_directory(configured: Path | None) -> Path:
    """The configured directory, emptied of an earlier run's files (a dead process's counters would
    be added to ours for good), or a private one removed at exit."""
    if configured is None:
        private = Path(tempfile.mkdtemp(prefix="routebook-metrics-"))
        atexit.register(shutil.rmtree, private, ignore_errors=True)
        return private
    configured.mkdir(parents=True, exist_ok=True)
    for stale in configured.glob("*.db"):
        stale.unlink(missing_ok=True)
    return configured


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged: one every few seconds would drown the access log."""


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _exposition(directory: Path) -> WsgiApp:
    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    metrics_app: WsgiApp = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # prometheus-client answers on every path; ours is /metrics alone.
        if environ.get("PATH_INFO") != PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"Not found: metrics are at /metrics\n"]
        return metrics_app(environ, start_response)

    return app


def _listen(host: str, port: int, directory: Path) -> None:
    server_class = _Server6 if ":" in host else _Server
    server = make_server(
        host, port, _exposition(directory), server_class=server_class, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://%s:%d%s", _url_host(host), port, PATH)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# -- what call sites record (each a no-op with metrics off) --------------------------------------


def instruments() -> Instruments | None:
    """The instruments, for a hot path that caches its children (the request middleware)."""
    return _instruments


class RequestTally:
    """HTTP request counts and latencies gathered in plain integers and floats and handed to
    prometheus-client in bulk (`flush()`, once a second from the request middleware).

    In multi-process mode each write to a metric takes a lock and writes a memory-mapped file: a
    counter and a histogram cost three such writes, the largest part of what metrics added to a
    planning request. Here a request costs two dictionary updates and a bisection. A histogram's
    observations are added bucket by bucket through the child's own values (`_buckets`, `_sum`:
    prometheus-client has no public bulk observe; the version is pinned and the scrape test reads
    the result), so a scrape sees exactly what `observe()` would have written.
    """

    def __init__(self, instruments: Instruments) -> None:
        self._instruments = instruments
        self._bounds = (*HTTP_SECONDS_BUCKETS, float("inf"))  # the histogram's own, +Inf last
        self._counts: dict[tuple[str, str, str], int] = {}
        # (route, method) -> [sum of seconds, then one count per bucket]
        self._latencies: dict[tuple[str, str], list[float]] = {}

    def add(self, route: str, method: str, status_class: str, seconds: float) -> None:
        key = (route, method, status_class)
        self._counts[key] = self._counts.get(key, 0) + 1
        latencies = self._latencies.get(key[:2])
        if latencies is None:
            latencies = self._latencies[key[:2]] = [0.0] * (len(self._bounds) + 1)
        latencies[0] += seconds
        latencies[1 + bisect.bisect_left(self._bounds, seconds)] += 1

    def flush(self) -> None:
        counts, self._counts = self._counts, {}
        latencies, self._latencies = self._latencies, {}
        for key, count in counts.items():
            self._instruments.http_requests.labels(*key).inc(count)
        for (route, method), values in latencies.items():
            child = self._instruments.http_duration.labels(route, method)
            child._sum.inc(values[0])
            for bucket, observed in zip(child._buckets, values[1:], strict=True):
                if observed:
                    bucket.inc(observed)


def unavailable(cause: str) -> None:
    if _instruments is not None:
        _instruments.unavailable.labels(cause).inc()


def pool_usage(in_use: int, waiting: int) -> None:
    if _instruments is not None:
        _instruments.pool_in_use.set(in_use)
        _instruments.pool_waiting.set(waiting)


def jwks_fetch(provider: str, outcome: str) -> None:
    if _instruments is not None:
        _instruments.jwks_fetches.labels(provider, outcome).inc()


def webhook_delivery(provider: str, outcome: str) -> None:
    if _instruments is not None:
        _instruments.webhook_deliveries.labels(provider, outcome).inc()


def stream_opened(delta: int) -> None:
    if _instruments is not None:
        _instruments.sse_streams.inc(delta)


def queue_depth(depths: Mapping[str, int]) -> None:
    if _instruments is not None:
        for status, count in depths.items():
            _instruments.queue_depth.labels(status).set(count)


def solve_picked(waited_s: float) -> None:
    if _instruments is not None:
        _instruments.pickup.observe(max(waited_s, 0.0))


def solve_ended(outcome: str, duration_s: float | None, iterations: int | None) -> None:
    """A solve ended `succeeded`, `failed` or `cancelled`; without a duration when no run was made
    (its runs were interrupted too often)."""
    if _instruments is not None:
        _instruments.solves.labels(outcome).inc()
        if duration_s is not None:
            _instruments.solve_duration.labels(outcome).observe(duration_s)
        if iterations is not None:
            _instruments.solve_iterations.observe(iterations)
