"""The request tally hands prometheus-client exactly what `observe()` and `inc()` would have written:
same counts, same buckets, same sums, across several flushes."""

from __future__ import annotations

from typing import cast

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from service.core import metrics


class _Instruments:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.http_requests = Counter(
            "routebook_http_requests", "", ["route", "method", "status"], registry=registry
        )
        self.http_duration = Histogram(
            "routebook_http_request_duration_seconds",
            "",
            ["route", "method"],
            buckets=metrics.HTTP_SECONDS_BUCKETS,
            registry=registry,
        )


# On the bounds, between them, below the first and beyond the last.
SECONDS = [0.0, 0.005, 0.0051, 0.01, 0.3, 1.0, 2.5, 9.99, 10.0, 10.01, 3600.0]
REQUESTS = [
    ("/api/v1/scenarios/{scenario_id}", "GET", "2xx"),
    ("/api/v1/scenarios/{scenario_id}", "GET", "4xx"),
    ("/health", "GET", "2xx"),
    ("unmatched", "POST", "4xx"),
]


def _exposition(registry: CollectorRegistry) -> list[str]:
    """The text a scrape reads, without the _created lines (they carry the instant each child was
    made) and with sums to nine significant digits (a sum of sums adds in another order)."""
    lines = []
    for line in generate_latest(registry).decode().splitlines():
        if "_created" in line:
            continue
        if "_sum{" in line:
            name, number = line.rsplit(" ", 1)
            line = f"{name} {float(number):.9g}"
        lines.append(line)
    return sorted(lines)


def test_a_flushed_tally_reads_exactly_as_observed_requests() -> None:
    tallied, observed = CollectorRegistry(), CollectorRegistry()
    tally = metrics.RequestTally(cast(metrics.Instruments, _Instruments(tallied)))
    direct = _Instruments(observed)
    for round_ in range(3):
        for index, seconds in enumerate(SECONDS):
            route, method, status = REQUESTS[(index + round_) % len(REQUESTS)]
            tally.add(route, method, status, seconds)
            direct.http_requests.labels(route, method, status).inc()
            direct.http_duration.labels(route, method).observe(seconds)
        if round_ != 1:  # two rounds' requests in one flush, too
            tally.flush()
    assert _exposition(tallied) == _exposition(observed)
    assert any("routebook_http_requests_total" in line for line in _exposition(tallied))


def test_nothing_is_written_before_a_flush() -> None:
    registry = CollectorRegistry()
    tally = metrics.RequestTally(cast(metrics.Instruments, _Instruments(registry)))
    tally.add("/health", "GET", "2xx", 0.001)
    assert not any(line.startswith("routebook_http_requests_total{") for line in _exposition(registry))
    tally.flush()
    assert 'routebook_http_requests_total{method="GET",route="/health",status="2xx"} 1.0' in _exposition(
        registry
    )
